"""`embedscope watch` as a real process: files dropped while it runs, slow writers, kill -9 and
restart, SIGTERM, two daemons on one database, stats while it runs."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import REPO, make_photo, run_cli, save_jpeg

pytestmark = pytest.mark.daemon

FAST = ["--weights", "random", "--image-size", "56", "--batch-size", "4", "--workers", "2", "--json"]
TIMEOUT = 240.0  # generous: CI shares 2 cores between the daemon, its model and the test


class Daemon:
    """One `embedscope watch` subprocess, stdout (JSON events) and stderr (log) in files."""

    count = 0

    def __init__(self, tmp_path: Path, drop: Path, db: Path, *extra: str) -> None:
        Daemon.count += 1
        self.out = tmp_path / f"watch{Daemon.count}.out"
        self.err = tmp_path / f"watch{Daemon.count}.err"
        env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
        cmd = [sys.executable, "-m", "embedscope", "watch", str(drop), "--db", str(db), *FAST, *extra]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env)
        self.pid = self.proc.pid

    def log(self) -> str:
        return self.err.read_text(errors="replace")

    def events(self, kind: str | None = None) -> list[dict]:
        rows = [json.loads(line) for line in self.out.read_text().splitlines() if line.startswith("{")]
        return [r for r in rows if kind is None or r["event"] == kind]

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            if self.proc.poll() is not None:
                raise AssertionError(f"watch exited {self.proc.returncode} while waiting for {what}\n{self.log()}")
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.log()}")

    def ready(self) -> None:
        self.wait_for("the daemon to start watching", lambda: "watching " in self.log())

    def terminate(self, sig: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        self.proc.send_signal(sig)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)


@pytest.fixture
def daemons():
    started: list[Daemon] = []
    yield started
    for d in started:  # never leave a daemon running, whatever happened
        d.kill()


def counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {"images": 0, "sources": 0, "quarantine": 0, "embeddings": 0}
    d = Database(db)
    return {"images": d.count(S.IMAGES), "sources": d.count(S.SOURCES), "quarantine": d.count(S.QUARANTINE),
            "embeddings": d.count(S.embeddings_table_name("dinov2_vits14"))}


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def photo(drop: Path, name: str, seed: int) -> Path:
    return save_jpeg(make_photo(seed, (96, 72)), drop / name)


def drop_atomically(path: Path, data: bytes) -> None:
    tmp = path.parent / f".{path.name}.part"  # dot-files are never scanned
    tmp.write_bytes(data)
    tmp.rename(path)


def assert_exactly_once(db: Path, *, paths: set[str], shas: set[str], quarantined: set[str]) -> None:
    """Every table readable in full; images/embeddings once per content; every path in sources."""
    d = Database(db)
    for name in d.table_names():
        d.read(name)  # no table left unreadable
    images = d.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist()
    assert sorted(images) == sorted(shas), "images must hold each content exactly once"
    emb = d.read(S.embeddings_table_name("dinov2_vits14"), ["sha256", "variant"]).to_pylist()
    assert sorted(r["sha256"] for r in emb) == sorted(shas) and {r["variant"] for r in emb} == {"full"}
    sources = d.read(S.SOURCES, ["sha256", "path"]).to_pylist()
    assert len(sources) == len({(r["sha256"], r["path"]) for r in sources})
    assert {r["path"] for r in sources} == paths
    assert all(r["sha256"] for r in sources)
    q = d.read(S.QUARANTINE, ["path"]).column("path").to_pylist()
    assert sorted(q) == sorted(quarantined)


def test_watch_ingests_drops_while_running_waits_for_slow_writers_and_stops_on_sigterm(tmp_path, daemons):
    drop, db = tmp_path / "drop", tmp_path / "db"
    first = [photo(drop, f"a{i}.jpg", i) for i in range(3)]
    a = Daemon(tmp_path, drop, db, "--interval", "0.3", "--settle", "1.5", "--heartbeat", "1",
               "--max-files-per-batch", "4", "--on-batch-analyze", "2", "--optimize-every", "1")
    daemons.append(a)
    a.ready()
    a.wait_for("the files present at start", lambda: counts(db)["images"] == 3)

    # dropped while it runs: new photos, an exact copy, a non-image, an old truncated JPEG
    later = [photo(drop / "sub", f"b{i}.jpg", 10 + i) for i in range(3)]
    drop_atomically(drop / "sub" / "copy of a0.jpg", first[0].read_bytes())
    (drop / "notes.png").write_text("this is not a png")
    broken = drop / "broken.jpg"
    broken.write_bytes(first[1].read_bytes()[:400])
    os.utime(broken, (time.time() - 3600, time.time() - 3600))  # long finished: truly truncated
    a.wait_for("the dropped files", lambda: counts(db) == {"images": 6, "sources": 9, "quarantine": 2,
                                                           "embeddings": 6})

    # readers are never blocked by the writer
    stats = json.loads(run_cli("stats", "--db", str(db), "--json").stdout)
    assert (stats["images"], stats["quarantined"]) == (6, 2)

    # a JPEG copied slowly, stalling far longer than the settle time: never read half-written
    slow = tmp_path / "slow-source.jpg"
    photo(tmp_path, slow.name, 99)
    data = slow.read_bytes()
    with open(drop / "slow.jpg", "wb") as fh:
        fh.write(data[: len(data) // 3])
        fh.flush()
        seen = len(a.events("heartbeat"))
        a.wait_for("the daemon to hold the unfinished JPEG back",
                   lambda: any(h["held_unfinished"] == 1 for h in a.events("heartbeat")[seen:]))
        # a BMP (no end marker to check) written in chunks with pauses shorter than --settle
        bmp = tmp_path / "src.bmp"
        make_photo(98, (96, 72)).save(bmp)
        raw = bmp.read_bytes()
        with open(drop / "slow.bmp", "wb") as bfh:
            for i in range(0, len(raw), len(raw) // 8 + 1):
                bfh.write(raw[i:i + len(raw) // 8 + 1])
                bfh.flush()
                time.sleep(0.2)
        for i in range(len(data) // 3, len(data), 2000):
            fh.write(data[i:i + 2000])
            fh.flush()
            time.sleep(0.1)
    a.wait_for("the slowly written files", lambda: counts(db)["images"] == 8)
    assert counts(db)["quarantine"] == 2, a.log()

    paths = {str(p) for p in [*first, *later, drop / "sub" / "copy of a0.jpg", drop / "notes.png", broken,
                              drop / "slow.jpg", drop / "slow.bmp"]}
    shas = {sha(p) for p in [*first, *later, drop / "slow.jpg", drop / "slow.bmp"]}
    assert_exactly_once(db, paths=paths, shas=shas, quarantined={str(drop / "notes.png"), str(broken)})

    # one log line per batch with the counts, and a heartbeat
    log = a.log()
    assert "batch 1: 3 new, 0 duplicates, 0 quarantined" in log and "images/s" in log
    assert "alive:" in log
    assert "compacted images, sources" in log  # periodic compaction ran, and the counts above held
    batches = a.events("batch")
    assert sum(b["new"] for b in batches) == 8 and sum(b["duplicates"] for b in batches) == 1
    assert a.events("analyze") and Database(db).count(S.RUNS) >= 1  # novelty refreshed at least once

    # a second daemon on the same database exits at once, naming the first
    second = run_cli("watch", str(drop), "--db", str(db), *FAST, check=False, timeout=120)
    assert second.returncode == 3, second.stderr
    assert "already watched" in second.stderr and f"pid {a.pid}" in second.stderr

    # ... or waits as a standby with --wait-lock, and takes over when the first stops
    b = Daemon(tmp_path, drop, db, "--interval", "0.3", "--settle", "0.5", "--heartbeat", "0.5", "--wait-lock", "inf")
    daemons.append(b)
    b.wait_for("the standby to wait", lambda: "waiting" in b.log())
    assert a.terminate() == 0
    assert "watch stopped: " in a.log()
    b.ready()
    assert f"{len(paths)} paths already recorded" in b.log()
    assert "taken over" not in b.log()  # a clean stop leaves no stale lock behind
    b.wait_for("a few polls", lambda: len(b.events("heartbeat")) >= 3)
    assert b.terminate() == 0
    assert b.events("batch") == [], "known files were hashed again (cheap change detection failed)"
    assert counts(db)["images"] == 8


def test_kill_9_at_random_points_then_restart_ingests_everything_exactly_once(tmp_path, daemons):
    rng = random.Random(int(os.environ.get("EMBEDSCOPE_TEST_SEED", "4")))
    drop, db = tmp_path / "drop", tmp_path / "db"
    originals = [photo(drop / f"d{i % 3}", f"p{i}.jpg", 200 + i) for i in range(24)]
    copies = []
    for i in range(4):
        copies.append(drop / "copies" / f"copy{i}.jpg")
        copies[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(originals[i * 5], copies[-1])
    (drop / "bad.png").write_text("not an image")
    paths = {str(p) for p in [*originals, *copies, drop / "bad.png"]}
    shas = {sha(p) for p in originals}
    args = ("--interval", "0.2", "--settle", "0", "--max-files-per-batch", "3", "--heartbeat", "0")

    took_over = 0
    rounds = int(os.environ.get("EMBEDSCOPE_TEST_KILL_ROUNDS", "3"))  # more for a local stress run
    for _ in range(rounds):
        d = Daemon(tmp_path, drop, db, *args)
        daemons.append(d)
        d.ready()
        took_over += "taken over" in d.log()
        k = rng.randint(0, 2)
        d.wait_for(f"{k} batches", lambda: len(d.events("batch")) >= k or counts(db)["sources"] == len(paths))
        time.sleep(rng.uniform(0.0, 1.0))  # somewhere inside the next batch: hashing, encoding or a commit
        d.kill()  # SIGKILL: no cleanup of any kind
        assert d.proc.returncode == -signal.SIGKILL

    assert took_over >= rounds - 1  # the dead daemons' locks were freed by the OS and taken over

    # SIGTERM in the middle of the work: the current batch is finished or abandoned, exit 0
    d = Daemon(tmp_path, drop, db, *args)
    daemons.append(d)
    d.ready()
    d.wait_for("a batch", lambda: len(d.events("batch")) >= 1 or counts(db)["sources"] == len(paths))
    time.sleep(rng.uniform(0.0, 0.5))
    assert d.terminate() == 0, d.log()
    assert "watch stopped: " in d.log()

    # a last start finishes the work, with no repair step
    d = Daemon(tmp_path, drop, db, *args)
    daemons.append(d)
    d.ready()
    d.wait_for("everything", lambda: counts(db)["sources"] == len(paths))
    assert d.terminate() == 0
    assert_exactly_once(db, paths=paths, shas=shas, quarantined={str(drop / "bad.png")})
    stats = json.loads(run_cli("stats", "--db", str(db), "--json").stdout)
    assert stats["images"] == 24 and stats["embeddings"] == {"dinov2_vits14/full": 24}


def test_watch_hostile_drop_every_file_its_outcome_half_written_formats_held_and_restart_adds_nothing(
        tmp_path, daemons):
    """The hostile corpus (tests/hostile_corpus.py) under a running daemon: every path gets the
    outcome `ingest` gives it (a name that is not UTF-8 used to fail its batch for ever);
    half-written BMP, GIF, TIFF and WebP files are held back (they used to be quarantined) and
    stored once whole; a restarted daemon finds every path already recorded."""
    import io

    from tests import hostile_corpus
    from tests.test_hostile_ingest import assert_outcomes, table_rows

    drop, expect = hostile_corpus.build(tmp_path)
    old = time.time() - 3600  # long finished: the truncated ones are truly truncated
    for path in drop.iterdir():
        os.utime(path, (old, old), follow_symlinks=False)
    db = tmp_path / "db"
    whole: dict[str, bytes] = {}
    for i, (fmt, ext) in enumerate([("BMP", "bmp"), ("GIF", "gif"), ("TIFF", "tif"), ("WEBP", "webp")]):
        buf = io.BytesIO()
        make_photo(70 + i, (96, 72)).save(buf, fmt)
        whole[f"slow.{ext}"] = buf.getvalue()
        (drop / f"slow.{ext}").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    a = Daemon(tmp_path, drop, db, "--interval", "0.3", "--settle", "0.5", "--heartbeat", "0.5")
    daemons.append(a)
    a.ready()

    def recorded() -> set[str]:
        return set(Database(db).read(S.SOURCES, ["path"]).column("path").to_pylist()) if db.exists() else set()

    a.wait_for("every finished file", lambda: len(recorded()) == len(expect))
    seen = len(a.events("heartbeat"))
    a.wait_for("more polls", lambda: len(a.events("heartbeat")) >= seen + 3)
    assert not any(p.rsplit("/", 1)[-1] in whole for p in recorded()), "a half-written file was read"
    assert any(h["held_unfinished"] == 4 for h in a.events("heartbeat")[seen:])
    for name, data in whole.items():
        with open(drop / name, "ab") as fh:
            fh.write(data[len(data) // 2:])
        expect[name] = hostile_corpus.Expect("ingested")
    a.wait_for("the completed files", lambda: len(recorded()) == len(expect))
    assert a.terminate() == 0
    assert "Traceback" not in a.log() and "batch failed" not in a.log(), a.log()
    assert_outcomes(db, drop, expect)
    rows = table_rows(db)

    b = Daemon(tmp_path, drop, db, "--interval", "0.3", "--settle", "0.5", "--heartbeat", "0.5")
    daemons.append(b)
    b.ready()
    assert f"{len(expect)} paths already recorded" in b.log()
    b.wait_for("a few polls", lambda: len(b.events("heartbeat")) >= 3)
    assert b.terminate() == 0
    assert b.events("batch") == [], "recorded paths were read again"
    assert table_rows(db) == rows


@pytest.mark.slow
def test_watch_report_dir_gets_one_report_per_checked_batch_listing_its_verdicts(tmp_path, daemons):
    drop, db, reports = tmp_path / "drop", tmp_path / "db", tmp_path / "reports"
    first = [photo(drop / "train" / "cat", f"a{i}.jpg", 300 + i) for i in range(4)]
    d = Daemon(tmp_path, drop, db, "--interval", "0.3", "--settle", "0.3", "--label-from-folder",
               "--report-dir", str(reports))
    daemons.append(d)
    d.ready()
    d.wait_for("the first batch's verdicts", lambda: len(d.events("arrivals")) == 1)
    (drop / "test" / "cat").mkdir(parents=True)
    drop_atomically(drop / "test" / "cat" / "leaked.jpg", first[0].read_bytes())
    d.wait_for("the second batch's verdicts", lambda: len(d.events("arrivals")) == 2)
    assert d.terminate() == 0
    events = d.events("arrivals")
    assert sorted(p.name for p in reports.iterdir()) == sorted(f"{e['drop_id']}.{ext}" for e in events
                                                               for ext in ("html", "json"))
    for event, expected in zip(events, ({str(p): {"new"} for p in first},
                                        {str(drop / "test/cat/leaked.jpg"): {"exact_dup", "leak"}})):
        assert event["report"] == str(reports / f"{event['drop_id']}.html")
        data = json.loads((reports / f"{event['drop_id']}.json").read_text())
        assert data["drop"]["drop_id"] == event["drop_id"] and data["drop"]["kind"] == "watch"
        assert {i["path"]: {v["verdict"] for v in i["verdicts"]} for i in data["images"]} == expected
        page = (reports / f"{event['drop_id']}.html").read_text()
        assert all(Path(p).name in page for p in expected)
        assert all(f"<h2 id='{v}'>" in page for vs in expected.values() for v in vs)
