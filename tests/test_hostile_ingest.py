"""A hostile drop through the real `ingest` and `watch`: every file gets its exact outcome, the
rest of the batch always lands, nothing outside the drop is read, and a re-run adds nothing.

The corpus is generated (tests/hostile_corpus.py). The pipeline runs for real everywhere; the
tests that need a moment between two stages (a link retargeted, a file deleted) run the
stages themselves, in order, with that moment in between."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from embedscope.config import IngestSettings, load_settings
from embedscope.errors import DatabaseError, DecodeError
from embedscope.ingest.pathnames import os_path, path_bytes, stored_path
from embedscope.ingest.reading import UnreadableFile, human_size
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests import hostile_corpus
from tests.conftest import REPO, make_photo, save_jpeg

FAST = ["--weights", "random", "--image-size", "56", "--batch-size", "4", "--workers", "2", "--no-progress"]
EMB = S.embeddings_table_name("dinov2_vits14")


# -- checking a database against the expected outcome of each file ---------------------------


def outcomes(db_path: Path, drop: Path) -> dict[str, tuple[str, str]]:
    """``{name in drop: (outcome, reason)}`` as the database records it; also checks that
    every table is consistent (no orphan embeddings, every path settled)."""
    db = Database(db_path)
    images = {r["sha256"]: r["path"] for r in db.read(S.IMAGES, ["sha256", "path"]).to_pylist()}
    sources = db.read(S.SOURCES, ["sha256", "path"]).to_pylist()
    quarantine = db.read(S.QUARANTINE, ["sha256", "path", "reason"]).to_pylist()
    embedded = set(db.read(EMB, ["sha256"]).column("sha256").to_pylist()) if db.has_table(EMB) else set()
    assert embedded == set(images), "every image has its embedding and no embedding is an orphan"
    quarantined = {(r["sha256"], r["path"]): r["reason"] for r in quarantine}
    for row in sources:  # every recorded path is settled: its content is stored or quarantined
        assert row["sha256"] in images or (row["sha256"], row["path"]) in quarantined, row
    prefix = stored_path(str(drop)) + "/"
    result: dict[str, tuple[str, str]] = {}
    for row in sources:
        assert row["path"].startswith(prefix), f"a path from outside the drop was recorded: {row}"
        name = os_path(row["path"][len(prefix):])
        sha, path = row["sha256"], row["path"]
        if (sha, path) in quarantined:
            outcome = ("quarantined", quarantined[(sha, path)])
        elif images.get(sha) == path:
            outcome = ("ingested", "")
        else:
            outcome = ("duplicate", "")
        assert result.setdefault(name, outcome) == outcome, f"{name!r} has two outcomes"
    return result


def assert_outcomes(db_path: Path, drop: Path, expect: dict[str, hostile_corpus.Expect]) -> None:
    got = outcomes(db_path, drop)
    assert set(got) == set(expect), f"paths not recorded: {set(expect) - set(got)}; extra: {set(got) - set(expect)}"
    wrong = {name: got[name] for name, e in expect.items()
             if got[name][0] != e.outcome or e.reason not in got[name][1]}
    assert not wrong, "\n".join(f"{n!r}: expected {expect[n]}, got {wrong[n]}" for n in sorted(wrong))


def table_rows(db_path: Path) -> dict[str, int]:
    db = Database(db_path)
    return {name: db.count(name) for name in (S.IMAGES, S.SOURCES, S.QUARANTINE, EMB)}


def run_measured(*args: str, env: dict | None = None, timeout: float = 900) -> tuple[subprocess.CompletedProcess, int, float]:
    """`python -m embedscope ARGS` in a fresh child, with that child's peak RSS (bytes, from
    ``getrusage(RUSAGE_CHILDREN)`` of a wrapper that runs nothing else) and wall seconds."""
    wrapper = ("import json, resource, subprocess, sys, time\n"
               "t0 = time.monotonic()\n"
               "p = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
               "print(json.dumps({'rc': p.returncode, 'out': p.stdout, 'err': p.stderr, 's': time.monotonic() - t0,\n"
               "  'rss': resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))\n")
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    out = subprocess.run([sys.executable, "-c", wrapper, sys.executable, "-m", "embedscope", *args],
                         capture_output=True, text=True, env=full_env, timeout=timeout, check=True)
    r = json.loads(out.stdout)
    return subprocess.CompletedProcess(args, r["rc"], r["out"], r["err"]), r["rss"], r["s"]


# -- the stored path ------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"/d/plain.jpg", b"/d/x\xff.jpg", b"/d/\xc3(bad).jpg", b"/d/new\nline.jpg",
                                 b"/d/x\\xff.jpg", b"/d/a\\\\b.jpg", b"/d/a\\b.jpg", b"/d/\\\xff\\x41.jpg",
                                 "/d/ümlaut €.jpg".encode()])
def test_stored_paths_are_utf8_readable_and_lead_back_to_the_same_bytes(raw):
    stored = stored_path(os.fsdecode(raw))
    stored.encode("utf-8")  # storable in any UTF-8 column
    assert path_bytes(stored) == raw
    assert os.fsencode(os_path(stored)) == raw


def test_ordinary_paths_are_stored_unchanged_and_bad_bytes_as_escapes():
    assert stored_path("/d/ümlaut €.jpg") == "/d/ümlaut €.jpg"
    assert stored_path("/d/a\\b.jpg") == "/d/a\\b.jpg"  # a backslash that escapes nothing stays
    assert stored_path(os.fsdecode(b"/d/x\xff.jpg")) == "/d/x\\xff.jpg"
    assert stored_path("/d/x\\xff.jpg") == "/d/x\\\\xff.jpg"  # a literal "\xff" in a valid name


# -- the real CLI on the whole corpus ------------------------------------------------------------


@pytest.mark.slow
def test_hostile_drop_through_ingest_exact_outcomes_rss_rerun_and_supersede(tmp_path):
    drop, expect = hostile_corpus.build(tmp_path)
    db = tmp_path / "db"
    proc, rss, seconds = run_measured("ingest", str(drop), "--db", str(db), *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout)
    n_ok = sum(e.outcome == "ingested" for e in expect.values())
    n_bad = sum(e.outcome == "quarantined" for e in expect.values())
    assert (summary["new"], summary["quarantined"], summary["scanned"]) == (n_ok, n_bad, len(expect))
    print(f"\nhostile corpus ({len(expect)} paths): peak RSS {rss / 2**20:.0f} MiB (the model's share included), "
          f"{seconds:.1f}s")
    assert_outcomes(db, drop, expect)

    # the stored name that is not UTF-8 leads back to the very file
    images = Database(db).read(S.IMAGES, ["sha256", "path"]).to_pylist()
    bad = next(r for r in images if r["path"].endswith("x\\xff.jpg"))
    with open(path_bytes(bad["path"]), "rb") as fh:
        assert hashlib.sha256(fh.read()).hexdigest() == bad["sha256"]
    assert os.fsencode(os_path(bad["path"])).endswith(hostile_corpus.BAD_UTF8)

    # a re-run adds nothing
    before = table_rows(db)
    proc, _, _ = run_measured("ingest", str(drop), "--db", str(db), *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert (again["new"], again["completed"], again["duplicates"] + again["quarantined"]) == (0, 0, len(expect) - n_ok) or \
        again["new"] == 0
    assert table_rows(db) == before
    assert_outcomes(db, drop, expect)

    # the truncated file arrives whole: it is stored and supersedes its quarantine rows
    full = hostile_corpus._jpeg(20, (160, 120))
    (drop / "cut50.jpg").write_bytes(full)
    proc, _, _ = run_measured("ingest", str(drop), "--db", str(db), *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    expect["cut50.jpg"] = hostile_corpus.Expect("ingested")
    assert_outcomes(db, drop, expect)
    quarantine = Database(db).read(S.QUARANTINE, ["path"]).column("path").to_pylist()
    assert not any(p.endswith("/cut50.jpg") for p in quarantine)


@pytest.mark.slow
def test_a_4_gib_file_is_refused_by_its_size_without_reading_it(tmp_path):
    """A 2 KB JPEG head and 4 GiB of (sparse) zeros used to be read whole (5.17 GB RSS) and
    stored as a 400x533 image; the open file's size is now checked before any byte is read."""
    drop = tmp_path / "drop"
    drop.mkdir()
    big = drop / "sparse-4g.jpg"
    big.write_bytes(hostile_corpus._jpeg(40, (400, 533)))
    os.truncate(big, hostile_corpus.SPARSE_SIZE)
    proc, rss, seconds = run_measured("ingest", str(drop), "--db", str(tmp_path / "db"), *FAST, "--json")
    assert proc.returncode == 0, proc.stderr
    print(f"\n4 GiB sparse file: peak RSS {rss / 2**20:.0f} MiB, {seconds:.1f}s for the whole command")
    assert rss < 2**30, f"peak RSS {rss / 2**20:.0f} MiB"
    assert outcomes(tmp_path / "db", drop) == {
        "sparse-4g.jpg": ("quarantined", "file is 4.0 GiB, over the 256 MiB limit (--max-file-size)")}


@pytest.mark.slow
def test_max_pixels_from_the_environment_is_the_limit_in_force(tmp_path):
    """EMBEDSCOPE_MAX_PIXELS decides (it used to be Pillow's fixed 89.48 M), through the CLI."""
    drop = tmp_path / "drop"
    save_jpeg(make_photo(1, (100, 80)), drop / "small.jpg")
    proc, _, _ = run_measured("ingest", str(drop), "--db", str(tmp_path / "db"), *FAST, "--json",
                              env={"EMBEDSCOPE_MAX_PIXELS": "5000"})
    assert proc.returncode == 0, proc.stderr
    reason = Database(tmp_path / "db").read(S.QUARANTINE, ["reason"]).column("reason").to_pylist()
    assert reason == ["too many pixels (100x80 > limit 5000); possible decompression bomb"]


def test_max_pixels_setting_changes_the_decode_outcome(tmp_path):
    from embedscope.ingest.decode import decode_bytes

    path = save_jpeg(make_photo(1, (100, 80)), tmp_path / "a.jpg")
    low = load_settings(IngestSettings, {}, section="ingest", environ={"EMBEDSCOPE_MAX_PIXELS": "5000"})
    default = load_settings(IngestSettings, {}, section="ingest", environ={})
    with pytest.raises(DecodeError, match="too many pixels"):
        decode_bytes(path.read_bytes(), max_pixels=low.max_pixels)
    assert decode_bytes(path.read_bytes(), max_pixels=default.max_pixels).width == 100


@pytest.mark.slow
def test_an_image_above_pillows_own_limit_but_within_the_setting_decodes():
    """90 M pixels: above Pillow's 89.48 M warning limit (which used to refuse it), below the
    default --max-pixels of 178.9 M."""
    import io

    from PIL import Image

    from embedscope.ingest.decode import decode_bytes

    buf = io.BytesIO()
    Image.new("1", (10_000, 9_000)).save(buf, "PNG")
    decoded = decode_bytes(buf.getvalue(), max_pixels=IngestSettings().max_pixels, draft_to=56)
    assert (decoded.width, decoded.height) == (10_000, 9_000)


def test_size_limit_message_and_flag():
    from embedscope.cli.ingest import parse_size

    assert human_size(4 * 2**30 + 2048) == "4.0 GiB" and human_size(256 * 2**20) == "256 MiB"
    assert parse_size("256M") == parse_size("256MiB") == 256 * 2**20 and parse_size("1000") == 1000


# -- the stages run by hand, with something happening between two of them ---------------------


@pytest.fixture(scope="module")
def encoders():
    from embedscope.ingest.encoders import load_encoders

    return load_encoders(_settings(), announce=False)


def _settings(**kw) -> IngestSettings:
    return IngestSettings(weights="random", image_size=56, batch_size=4, workers=2, progress=False, **kw)


def _run(db_path: Path, encoders, entries, **kw):
    from embedscope.ingest.pipeline import make_run

    db = Database(db_path, create=True)
    return make_run(db, _settings(**kw), encoders).run(entries)


def test_links_retargeted_between_scan_and_read_let_nothing_from_outside_in(tmp_path, encoders):
    from embedscope.ingest.scan import scan_drops

    drop, outside = tmp_path / "drop", tmp_path / "outside"
    save_jpeg(make_photo(1), drop / "a.jpg")
    save_jpeg(make_photo(2), drop / "sub" / "b.jpg")
    secret = save_jpeg(make_photo(3), outside / "secret.jpg")
    save_jpeg(make_photo(4), outside / "dir" / "b.jpg")
    os.symlink("a.jpg", drop / "pic.jpg")
    entries = list(scan_drops([drop]))
    assert sorted(os.path.relpath(e.path, drop) for e in entries) == ["a.jpg", "pic.jpg", "sub/b.jpg"]
    # between the scan and the read: the file link points outside, and the folder the other
    # file is in has become a link to outside (a parent component retargeted)
    (drop / "pic.jpg").unlink()
    os.symlink(secret, drop / "pic.jpg")
    (drop / "sub").rename(tmp_path / "moved-away")
    os.symlink(outside / "dir", drop / "sub")
    summary = _run(tmp_path / "db", encoders, entries)
    assert (summary.new, summary.quarantined) == (1, 2)
    got = outcomes(tmp_path / "db", drop)
    assert got["pic.jpg"][0] == got["sub/b.jpg"][0] == "quarantined"
    assert "symlink points outside the drop" in got["pic.jpg"][1] and "outside the drop" in got["sub/b.jpg"][1]
    db = Database(tmp_path / "db")
    outside_shas = {hashlib.sha256(p.read_bytes()).hexdigest() for p in outside.rglob("*.jpg")}
    for table in (S.IMAGES, S.SOURCES, S.QUARANTINE, EMB):
        assert not outside_shas & set(db.read(table, ["sha256"]).column("sha256").to_pylist()), table


def test_a_file_changed_or_retargeted_between_hash_and_decode_is_refused(tmp_path, encoders):
    from embedscope.ingest.decode_stage import decode_entry
    from embedscope.ingest.hash_stage import hash_entry
    from embedscope.ingest.scan import scan_drops

    drop, outside = tmp_path / "drop", tmp_path / "outside"
    save_jpeg(make_photo(1), drop / "a.jpg")
    save_jpeg(make_photo(2), drop / "b.jpg")
    save_jpeg(make_photo(3), outside / "secret.jpg")
    os.symlink("a.jpg", drop / "link.jpg")
    entry = next(e for e in scan_drops([drop]) if e.path.endswith("link.jpg"))
    settings = _settings()
    sha = hash_entry(entry, settings.max_file_bytes)
    kw = dict(preprocessor=encoders.encoder.preprocessor, settings=settings, keep_image=False, draft_to=56,
              variants=("full",))
    assert decode_entry(entry, sha, **kw).sha256 == sha
    (drop / "link.jpg").unlink()
    os.symlink("b.jpg", drop / "link.jpg")  # another file inside: not the bytes that were hashed
    with pytest.raises(UnreadableFile, match="changed while it was being read"):
        decode_entry(entry, sha, **kw)
    (drop / "link.jpg").unlink()
    os.symlink(outside / "secret.jpg", drop / "link.jpg")
    with pytest.raises(UnreadableFile, match="symlink points outside the drop"):
        decode_entry(entry, sha, **kw)


def test_a_file_deleted_between_scan_and_read_is_recorded_and_the_rest_lands(tmp_path, encoders):
    from embedscope.ingest.scan import scan_drops

    drop = tmp_path / "drop"
    for i in range(3):
        save_jpeg(make_photo(i, (64, 48)), drop / f"{i}.jpg")
    entries = list(scan_drops([drop]))
    (drop / "1.jpg").unlink()
    summary = _run(tmp_path / "db", encoders, entries)
    assert (summary.new, summary.quarantined) == (2, 1)
    got = outcomes(tmp_path / "db", drop)
    assert got == {"0.jpg": ("ingested", ""), "2.jpg": ("ingested", ""),
                   "1.jpg": ("quarantined", "file vanished before it could be read")}


def test_a_file_the_encoder_fails_on_is_quarantined_and_the_batch_lands(tmp_path):
    """One item that makes the model fail (here: pixels of the wrong shape) costs only itself."""
    import numpy as np

    from embedscope.ingest.encode_stage import encode_isolated

    class Stage:
        variant, needs_image = "full", False

        def process(self, items):
            import pyarrow as pa

            if any(it.pixels.ndim != 2 for it in items):
                raise ValueError("expected 2-D pixels")
            arr = np.stack([it.pixels for it in items])
            return {"t": pa.table({"sha256": [it.sha256 for it in items], "x": arr.sum(axis=(1, 2)).tolist()})}

    @dataclasses.dataclass
    class Item:
        sha256: str
        pixels: object
        variants: tuple = ("full",)
        image: object = None

    items = [Item("a", np.ones((2, 2))), Item("bad", np.ones(3)), Item("c", np.ones((2, 2)))]
    tables, counts, failed = encode_isolated([Stage()], items)
    assert tables["t"].column("sha256").to_pylist() == ["a", "c"] and counts == {"full": 2}
    assert [(it.sha256, reason.split(":")[0]) for it, reason in failed] == [("bad", "cannot embed")]
    with pytest.raises(ValueError):  # every item fails alone: not the files' fault, raised
        encode_isolated([Stage()], [Item("x", np.ones(3)), Item("y", np.ones((2, 2, 2)))])


# -- disk full, for real (a tiny tmpfs) -------------------------------------------------------


def noisy(drop: Path, n: int) -> None:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(n):
        save_jpeg(Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)), drop / f"{i:02d}.jpg")


@pytest.fixture
def tiny_disk(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("needs root to mount a tiny tmpfs")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_is_one_error_loses_nothing_and_leaves_no_orphan_embeddings(tmp_path, tiny_disk, encoders):
    from embedscope.ingest.scan import scan_drops

    drop = tmp_path / "drop"
    noisy(drop, 24)  # large thumbnails: the embeddings fit on the disk, the images do not
    db_path = tiny_disk / "db"
    entries = list(scan_drops([drop]))
    with pytest.raises(DatabaseError, match="disk full while writing the database") as info:
        _run(db_path, encoders, entries, thumbnail_size=512, write_seconds=600)  # one commit, at the end
    assert "\n" not in info.value.one_line() and "run the same command again" in info.value.one_line()
    db = Database(db_path)
    images = set(db.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist())
    embedded = set(db.read(EMB, ["sha256"]).column("sha256").to_pylist()) if db.has_table(EMB) else set()
    assert embedded <= images, f"{len(embedded - images)} orphan embeddings"
    # (here the embeddings were committed, the images were not: the same run deleted them again,
    # which is one more table version after creating and writing it)
    assert not images and db.version(EMB) >= 3
    # room again: the same command completes everything, nothing was lost
    subprocess.run(["mount", "-o", "remount,size=256m", str(tiny_disk)], check=True)
    _run(db_path, encoders, entries, thumbnail_size=512)
    assert table_rows(db_path)[S.IMAGES] == 24 and table_rows(db_path)[EMB] == 24
    assert set(outcomes(db_path, drop).values()) == {("ingested", "")}


@pytest.mark.slow
def test_disk_full_through_the_cli_is_one_line(tmp_path, tiny_disk):
    drop = tmp_path / "drop"
    noisy(drop, 24)
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMBEDSCOPE_THUMBNAIL_SIZE": "512"}
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "embedscope", "ingest", str(drop), "--db", str(tiny_disk / "db"), *FAST],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1 and "disk full while writing the database" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    print(f"\ndisk full: exit {proc.returncode} after {time.monotonic() - t0:.1f}s: {lines[0]}")


# -- the daemon's retry policy ------------------------------------------------------------------


def test_watch_blames_no_file_for_the_disk_and_quarantines_a_file_that_fails_twice(tmp_path):
    import threading

    from embedscope.config import WatchSettings
    from embedscope.ingest.daemon import Watcher
    from embedscope.ingest.scan import scan_drops
    from embedscope.ingest.stability import entry_key

    drop, db_path = tmp_path / "drop", tmp_path / "db"
    for i in range(2):
        save_jpeg(make_photo(i, (64, 48)), drop / f"{i}.jpg")
    w = Watcher(_settings(drops=(str(drop),), db=str(db_path)), WatchSettings(), stop=threading.Event())
    w.db = Database(db_path, create=True)
    # the disk, the lock, the store: retried with back-off, no file blamed
    assert w._environmental(DatabaseError("disk full while writing the database"))
    assert w._environmental(OSError(28, "No space left on device"))
    assert w._environmental(RuntimeError("LanceError(IO): No space left on device (os error 28)"))
    assert not w._environmental(UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed"))
    entries = list(scan_drops([drop]))
    boom = ValueError("a bug one file triggers")
    assert w._strike(entries, boom) == entries  # a batch failed: its files are tried one at a time
    assert w._strike([entries[1]], boom) == []  # ... and the one that fails again, alone, is quarantined
    rows = Database(db_path).read(S.QUARANTINE, ["sha256", "path", "reason"]).to_pylist()
    assert rows == [{"sha256": "", "path": entries[1].path,
                     "reason": "ingest failed twice: ValueError: a bug one file triggers"}]
    assert entry_key(entries[1]) in w.known and entry_key(entries[0]) not in w.known


def test_a_row_arrow_refuses_costs_only_its_file_and_is_refused_before_anything_is_written(tmp_path):
    import datetime as dt

    import numpy as np

    from embedscope.ingest.commit import Committer
    from embedscope.ingest.decode_stage import DecodedItem
    from embedscope.ingest.rows import embedding_rows, source_row
    from embedscope.ingest.scan import FileEntry
    from embedscope.ingest.triage import KnownState
    from embedscope.ingest.writer import WriteJob

    now = dt.datetime.now(dt.timezone.utc)
    db = Database(tmp_path / "db", create=True)
    job = WriteJob()
    for name, width in (("good", 64), ("huge", 2**40)):  # a width no int32 column holds
        entry = FileEntry(f"/drop/{name}.jpg", "/drop", 10, now)
        job.items.append(DecodedItem(entry, name * 4, width, 48, "JPEG", 0, b"", None))
        job.sources.append(source_row(entry, name * 4, now))
    job.tables[EMB] = [embedding_rows(["good" * 4, "huge" * 4], np.eye(2, 8, dtype=np.float32),
                                      model="dinov2_vits14", variant="full", weights="random")]
    Committer(db, KnownState(set(), {}, {"full": set()}), label_from_folder=False).commit(job)
    assert db.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist() == ["good" * 4]
    assert db.read(EMB, ["sha256"]).column("sha256").to_pylist() == ["good" * 4]
    q = db.read(S.QUARANTINE, ["sha256", "path", "reason"]).to_pylist()
    assert [(r["sha256"], r["path"]) for r in q] == [("", "/drop/huge.jpg")] and "cannot be stored" in q[0]["reason"]
    assert sorted((r["sha256"], r["path"]) for r in db.read(S.SOURCES, ["sha256", "path"]).to_pylist()) == [
        ("", "/drop/huge.jpg"), ("good" * 4, "/drop/good.jpg")]


def test_watch_repairs_what_a_kill_left_before_its_first_batch(tmp_path):
    """The daemon runs `check --repair` at start, under its writer lock: an embedding whose
    image row never came (a kill between the two commits) is gone before the first batch."""
    import threading

    import pyarrow as pa

    from embedscope.config import WatchSettings
    from embedscope.ingest.daemon import Watcher
    from embedscope.ingest.encoders import load_encoders

    drop, db_path = tmp_path / "drop", tmp_path / "db"
    drop.mkdir()
    settings = _settings(drops=(str(drop),), db=str(db_path))
    w = Watcher(settings, WatchSettings(), stop=threading.Event())
    w.encoders = load_encoders(settings)  # as the daemon's start does (the network is not built)
    table = S.embeddings_table_name(w.encoders.encoder.name)
    dim = w.encoders.encoder.dim
    Database(db_path, create=True).upsert(table, pa.table({
        "sha256": ["f" * 64], "model": [w.encoders.encoder.name], "variant": ["full"],
        "vector": pa.array([[1.0] + [0.0] * (dim - 1)], pa.list_(pa.float32(), dim))}))
    w.db = Database(db_path)
    assert w._prepare_tables()
    assert Database(db_path).count(table) == 0
