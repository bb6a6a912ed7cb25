"""Object storage: `--db s3://...` and `s3://` drops, against a real local S3-compatible server
(moto in server mode, see tests/s3server.py), through the real CLI.

What is proved here: a database on S3 answers stats / query / similar / analyze exactly like the
same ingest into a local folder; a drop can be an S3 prefix (rows, URIs in `sources`, corrupt
objects quarantined, re-ingest all duplicates); `watch` polls an S3 prefix; two writers at once
on an S3 database store every image once (the no-lock decision); `--storage-option` beats the
environment; unreachable stores and missing credentials are one-line errors; the dashboard
serves an S3-sourced image's bytes by sha256.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedscope import cli
from embedscope.errors import ConfigError
from embedscope.objectstore import as_items, describe, parse_options, resolve_options
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import REPO, make_photo, run_cli, save_jpeg

FAST = ["--weights", "random", "--image-size", "56", "--batch-size", "8", "--precision", "fp32",
        "--workers", "2", "--no-progress"]
EMB = S.embeddings_table_name("dinov2_vits14")


def jpeg_bytes(seed: int, size: tuple[int, int] = (96, 72)) -> bytes:
    buf = io.BytesIO()
    make_photo(seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def cli_json(capsys, *args: str) -> object:
    capsys.readouterr()
    assert cli.main([*args]) == 0
    return json.loads(capsys.readouterr().out)


def start_cli(*args: str, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as err:
        return subprocess.Popen([sys.executable, "-m", "embedscope", *args], stdout=subprocess.PIPE,
                                stderr=err, text=True, env={**env, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})


def run_exact(*args: str, env: dict) -> subprocess.CompletedProcess:
    """The CLI with exactly ``env`` (run_cli merges into this process's environment)."""
    return subprocess.run([sys.executable, "-m", "embedscope", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, timeout=300)


def run_many(*calls: tuple[list[str], dict]) -> list[subprocess.CompletedProcess]:
    """Several :func:`run_exact` calls at once (each mostly waits on imports and the network)."""
    procs = [subprocess.Popen([sys.executable, "-m", "embedscope", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env={**env, "PYTHONPATH": str(REPO)}) for args, env in calls]
    done = []
    for (args, _), p in zip(calls, procs):
        out, err = p.communicate(timeout=300)
        done.append(subprocess.CompletedProcess(args, p.returncode, out, err))
    return done


def finish(proc: subprocess.Popen, log: Path, timeout: float = 300) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{log.read_text()}"
    return out


# -- options (no server) ---------------------------------------------------------------------


def test_storage_options_come_from_the_environment_and_explicit_ones_win():
    env = {"AWS_ACCESS_KEY_ID": "envkey", "AWS_SECRET_ACCESS_KEY": "envsecret", "AWS_SESSION_TOKEN": "envtoken",
           "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "http://env-host:9000",
           "AWS_ENDPOINT_URL_S3": "http://s3-host:9000"}
    got = resolve_options("s3://b/db", None, environ=env)
    assert got == {"aws_access_key_id": "envkey", "aws_secret_access_key": "envsecret", "aws_session_token": "envtoken",
                   "aws_region": "eu-west-1", "aws_endpoint": "http://s3-host:9000", "allow_http": "true"}
    # explicit (aliases accepted) beat the environment; a new key drops the environment's session token
    got = resolve_options("s3://b/db", ["endpoint=https://minio:9000", "access_key_id=mine", "secret_access_key=s"],
                          environ=env)
    assert got["aws_endpoint"] == "https://minio:9000" and "allow_http" not in got
    assert got["aws_access_key_id"] == "mine" and "aws_session_token" not in got
    assert resolve_options("gs://b/db", {"service_account": "/k.json"}, environ=env) == {"service_account": "/k.json"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_options(["aws_region"])


def test_storage_options_in_settings_from_env_and_toml(tmp_path: Path):
    from embedscope.config import IngestSettings, load_settings

    env = {"EMBEDSCOPE_STORAGE_OPTIONS": "aws_endpoint=http://h:9000, aws_region=eu-west-1"}
    s = load_settings(IngestSettings, {}, section="ingest", environ=env)
    assert s.storage_option_dict() == {"aws_endpoint": "http://h:9000", "aws_region": "eu-west-1"}
    toml = tmp_path / "c.toml"
    toml.write_text('[ingest]\nstorage_options = { aws_endpoint = "http://t:1", allow_http = "true" }\n')
    s = load_settings(IngestSettings, {}, section="ingest", config_file=toml, environ={})
    assert s.storage_options == as_items({"aws_endpoint": "http://t:1", "allow_http": "true"})
    # the CLI merges --storage-option over them, per key
    args = cli.build_parser().parse_args(["ingest", "d", "--db", "s3://b/x", "--config", str(toml),
                                          "--storage-option", "aws_endpoint=http://flag:2"])
    merged = cli.ingest_settings(args, args.drops).storage_option_dict()
    assert merged == {"aws_endpoint": "http://flag:2", "allow_http": "true"}


def test_every_db_command_takes_storage_options():
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    with_db = [name for name, p in sub.choices.items() if any(a.dest == "db" for a in p._actions)]
    assert len(with_db) >= 10
    for name, p in sub.choices.items():
        if name in with_db:
            assert any(a.dest == "storage_option" for a in p._actions), name


def test_error_reasons_are_short():
    refused = ValueError('Invalid input, Failed to connect to namespace: IO { source: Generic { store: "S3", '
                         'source: ListRequest { ... ConnectError("tcp connect error", 127.0.0.1:1, Os { code: 111, '
                         'kind: ConnectionRefused, message: "Connection refused" }) } }')
    assert describe(refused) == "cannot connect to the object store"
    assert describe(OSError("AWS Error NO_SUCH_BUCKET during ListObjectsV2")) == "the bucket does not exist"


# -- a database on S3 ------------------------------------------------------------------------


@pytest.mark.slow
def test_s3_database_written_by_two_processes_at_once_answers_like_a_local_one(s3, tmp_path: Path, capsys):
    """One local ingest of a tree vs two ingests started at once into one S3 database, over
    overlapping parts of the same tree (c1 is given to both). The S3 writer lock (a lease object)
    makes the second wait (--wait-lock) and then skip what the first stored: every image, vector
    and path exactly once — and every command then answers exactly as on the local copy."""
    tree = tmp_path / "tree"
    for i in range(12):
        save_jpeg(make_photo(i, (96, 72)), tree / f"c{i % 3}" / f"img{i}.jpg")
    # a copy inside the folder both writers get: the same first-seen path in every run ("copy" < "img")
    (tree / "c1" / "copy.jpg").write_bytes((tree / "c1" / "img1.jpg").read_bytes())
    (tree / "c0" / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    local, remote = str(tmp_path / "db"), s3.prefix("db")
    env = s3.subprocess_env(EMBEDSCOPE_WRITE_IMAGES="2", EMBEDSCOPE_WRITE_SECONDS="0")  # many small commits
    runs = [([str(tree)], local), ([str(tree / "c0"), str(tree / "c1")], remote),
            ([str(tree / "c1"), str(tree / "c2")], remote)]
    procs = [(start_cli("ingest", *drops, "--db", db, *FAST, "--batch-size", "2", "--label-from-folder", "--json",
                        "--wait-lock", "300",
                        env=env, log=tmp_path / f"ingest{i}.log"), tmp_path / f"ingest{i}.log")
             for i, (drops, db) in enumerate(runs)]
    summaries = [json.loads(finish(p, log).strip().splitlines()[-1]) for p, log in procs]
    assert (summaries[0]["new"], summaries[0]["duplicates"], summaries[0]["quarantined"]) == (12, 1, 1)
    assert summaries[1]["new"] + summaries[2]["new"] == 12, "the second writer found the shared folder stored"
    assert any("/_versions/" in k for k in s3.keys(remote)), "the tables live in the bucket"

    files = sorted(str(p) for p in tree.rglob("*.jpg"))
    good = [f for f in files if not f.endswith("broken.jpg")]
    shas = {hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in good}
    d = Database(remote)
    assert sorted(d.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist()) == sorted(shas), "each content once"
    assert sorted(d.read(EMB, ["sha256"]).column("sha256").to_pylist()) == sorted(shas), "each content embedded once"
    assert sorted(d.read(S.SOURCES, ["path"]).column("path").to_pylist()) == files, "each path once"

    history = ("drops", "verdicts")  # arrival checks: one drop here, two there (docs/verdicts.md)
    remote_stats, local_stats = (cli_json(capsys, "stats", "--db", db, "--json") for db in (remote, local))
    assert {k: v for k, v in remote_stats.items() if k not in history} == \
        {k: v for k, v in local_stats.items() if k not in history}
    judged: dict[str, set[str]] = {}
    for row in d.read(S.ARRIVALS, ["drop_id", "path"]).to_pylist():
        judged.setdefault(row["path"], set()).add(row["drop_id"])
    assert sorted(judged) == files and all(len(v) == 1 for v in judged.values()), "each path judged once"
    sql = ("SELECT i.label, count(*) AS n, min(s.path) AS first FROM images i JOIN sources s USING (sha256) "
           "GROUP BY 1 ORDER BY 1")
    assert cli_json(capsys, "query", "--db", remote, sql, "--format", "json") == \
        cli_json(capsys, "query", "--db", local, sql, "--format", "json")

    vec = {}
    for db in (local, remote):
        t = Database(db).read(EMB, ["sha256", "vector"]).sort_by("sha256")
        vec[db] = (t.column("sha256").to_pylist(), np.stack(t.column("vector").to_numpy(zero_copy_only=False)))
    assert vec[local][0] == vec[remote][0]
    np.testing.assert_allclose(vec[local][1], vec[remote][1], atol=1e-6)

    query = vec[local][0][0]
    near = {db: cli_json(capsys, "similar", "--db", db, query, "--k", "4", "--format", "json") for db in (local, remote)}
    assert [r["sha256"] for r in near[local]] == [r["sha256"] for r in near[remote]]
    np.testing.assert_allclose([r["distance"] for r in near[local]], [r["distance"] for r in near[remote]], atol=1e-5)

    runs = {db: cli_json(capsys, "analyze", "--db", db, "--cluster", "kmeans", "--k", "3", "--project", "pca", "--json")
            for db in (local, remote)}
    assert {k: v for k, v in runs[local].items() if k != "run_id"} == {k: v for k, v in runs[remote].items() if k != "run_id"}
    labels = {}
    for db in (local, remote):
        t = Database(db).read(S.CLUSTERS, ["sha256", "cluster"], where=f"run_id = '{runs[db]['run_id']}'")
        labels[db] = dict(zip(t.column("sha256").to_pylist(), t.column("cluster").to_pylist()))
    assert labels[local] == labels[remote] and len(set(labels[remote].values())) == 3
    out = tmp_path / "r.html"
    assert cli.main(["report", "--db", remote, "--out", str(out)]) == 0 and out.stat().st_size > 1000


# -- a drop on S3 ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def s3_drop_db(s3_server, tmp_path_factory):
    """An S3 prefix with 6 photos in two 'folders', a copy, a corrupt object, a hidden one and a
    text file, ingested into a database that is on S3 too."""
    tmp = tmp_path_factory.mktemp("s3drop")
    drop, db = s3_server.prefix("incoming"), s3_server.prefix("db")
    originals = {}
    for i in range(6):
        uri = f"{drop}/{'cats' if i < 3 else 'dogs'}/p{i}.jpg"
        originals[uri] = jpeg_bytes(50 + i, (320, 240))
        s3_server.upload(uri, originals[uri])
    s3_server.upload(f"{drop}/dogs/copy of p0.jpg", originals[f"{drop}/cats/p0.jpg"])
    s3_server.upload(f"{drop}/corrupt.jpg", b"\xff\xd8\xff\xe0 definitely not a whole jpeg")
    s3_server.upload(f"{drop}/.hidden/h.jpg", originals[f"{drop}/cats/p1.jpg"])
    s3_server.upload(f"{drop}/notes.txt", b"ignored")
    log = tmp / "ingest.log"
    out = finish(start_cli("ingest", drop + "/", "--db", db, *FAST, "--label-from-folder", "--json",
                           env=s3_server.subprocess_env(), log=log), log)
    return {"drop": drop, "db": db, "originals": originals, "summary": json.loads(out.strip().splitlines()[-1]),
            "tmp": tmp}


@pytest.mark.slow
def test_ingest_from_an_s3_prefix(s3, s3_drop_db):
    drop, db = s3_drop_db["drop"], s3_drop_db["db"]
    s = s3_drop_db["summary"]
    assert (s["scanned"], s["new"], s["duplicates"], s["quarantined"]) == (8, 6, 1, 1)
    d = Database(db)
    sources = d.read(S.SOURCES, ["path", "drop", "sha256"]).to_pylist()
    expected = sorted([*s3_drop_db["originals"], f"{drop}/dogs/copy of p0.jpg", f"{drop}/corrupt.jpg"])
    assert sorted(r["path"] for r in sources) == expected
    assert {r["drop"] for r in sources} == {drop}
    by_path = {r["path"]: r["sha256"] for r in sources}
    for uri, data in s3_drop_db["originals"].items():
        assert by_path[uri] == hashlib.sha256(data).hexdigest()
    labels = d.read(S.IMAGES, ["label", "width", "height"]).to_pylist()
    assert sorted(r["label"] for r in labels) == ["cats"] * 3 + ["dogs"] * 3
    assert {(r["width"], r["height"]) for r in labels} == {(320, 240)}
    q = d.read(S.QUARANTINE, ["path", "reason"]).to_pylist()
    assert [r["path"] for r in q] == [f"{drop}/corrupt.jpg"] and q[0]["reason"]

    again = run_cli("ingest", drop, "--db", db, *FAST, "--json", env=s3.subprocess_env())
    s = json.loads(again.stdout.strip().splitlines()[-1])
    assert (s["new"], s["duplicates"], s["quarantined"]) == (0, 7, 1)
    assert Database(db).count(S.IMAGES) == 6 and Database(db).count(S.SOURCES) == 8


@pytest.mark.slow
def test_dashboard_serves_an_s3_sourced_image_by_sha256(s3, s3_drop_db):
    from embedscope.dashboard.app import create_app

    uri, data = next(iter(s3_drop_db["originals"].items()))
    sha = hashlib.sha256(data).hexdigest()
    client = create_app(s3_drop_db["db"]).server.test_client()
    resp = client.get(f"/image/{sha}")
    assert resp.status_code == 200 and resp.headers["X-Embedscope-Source"] == "file"
    assert Image.open(io.BytesIO(resp.data)).size == (320, 240)  # the object itself, not the 128 px thumbnail
    assert client.get(f"/thumb/{sha}").status_code == 200
    assert client.get("/image/" + "0" * 64).status_code == 404


@pytest.mark.slow
def test_storage_option_overrides_the_environment(s3, s3_drop_db, monkeypatch, capsys):
    db = s3_drop_db["db"]
    dead = s3.subprocess_env(AWS_ENDPOINT_URL="http://127.0.0.1:9")  # nothing listens on port 9
    bad, good = run_many((["stats", "--db", db, "--json"], dead),
                         (["stats", "--db", db, "--json", "--storage-option", f"aws_endpoint={s3.endpoint}"], dead))
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert "cannot reach database" in bad.stderr and "cannot connect" in bad.stderr and "127.0.0.1:9" in bad.stderr
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["images"] == 6
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("EMBEDSCOPE_STORAGE_OPTIONS", f"aws_endpoint={s3.endpoint}")
    assert cli_json(capsys, "stats", "--db", db, "--json")["images"] == 6


def test_s3_writer_lock_is_exclusive_renewed_released_and_expires(s3):
    from embedscope.errors import DatabaseLockedError
    from embedscope.store import objectlock

    uri = s3.prefix("lock") + "/.embedscope-writer.lock"
    a = objectlock.acquire(uri, owner="first", ttl=2.0)
    try:
        time.sleep(3.0)  # longer than the ttl: only the heartbeat keeps it
        with pytest.raises(DatabaseLockedError, match="in use by another writer .*first pid"):
            objectlock.acquire(uri, owner="second", ttl=2.0)
    finally:
        a.release()
    b = objectlock.acquire(uri, owner="second", ttl=2.0)  # released: taken at once
    assert b.previous.get("released") is True
    b.abandon()  # as if killed: no more renewals, never released
    t0 = time.monotonic()
    c = objectlock.acquire(uri, owner="third", wait=30.0, ttl=2.0)
    waited = time.monotonic() - t0
    c.release()
    assert c.previous.get("owner") == "second" and not c.previous.get("released")
    assert 0.5 <= waited < 30.0  # it had to wait for the lease to run out


@pytest.mark.slow
def test_a_second_writer_on_an_s3_database_is_refused_in_one_line(s3, s3_drop_db, tmp_path: Path):
    db = Database(s3_drop_db["db"])
    with db.writer_lock(owner="test-holder"):
        assert any(k.endswith(".embedscope-writer.lock") for k in s3.keys(s3_drop_db["db"]))
        proc = run_exact("ingest", str(tmp_path), "--db", s3_drop_db["db"], *FAST, env=s3.subprocess_env())
    assert proc.returncode == 3, proc.stderr
    assert "in use by another writer (test-holder pid" in proc.stderr and "--wait-lock" in proc.stderr
    lines = [x for x in proc.stderr.strip().splitlines() if not x.startswith("WARNING: dinov2_vits14: using RANDOM")]
    assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr


@pytest.mark.slow
def test_unreachable_store_and_missing_credentials_are_one_line_errors(s3, s3_drop_db, tmp_path: Path):
    cases = [
        (["stats", "--db", s3_drop_db["db"]], s3.subprocess_env(AWS_ACCESS_KEY_ID=None, AWS_SECRET_ACCESS_KEY=None),
         "no credentials found"),
        (["stats", "--db", f"s3://{s3.bucket}/no-database-here"], s3.subprocess_env(), "no database at"),
        (["query", "--db", "s3://no-such-bucket-es/db", "SELECT 1"], s3.subprocess_env(), "the bucket does not exist"),
        (["ingest", f"s3://{s3.bucket}/incoming", "--db", str(tmp_path / "db"), *FAST],
         s3.subprocess_env(AWS_ENDPOINT_URL="http://127.0.0.1:9"), "cannot reach drop"),
    ]
    for (args, env, expected), proc in zip(cases, run_many(*[(args, env) for args, env, _ in cases])):
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert expected in proc.stderr and "embedscope" in proc.stderr, proc.stderr


@pytest.mark.daemon
def test_watch_on_an_s3_prefix_picks_up_a_new_upload(s3, tmp_path: Path):
    drop, db = s3.prefix("watched"), s3.prefix("watch-db")  # the prefix is empty when the watch starts
    out, err = tmp_path / "watch.out", tmp_path / "watch.err"
    env = {**s3.subprocess_env(), "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen([sys.executable, "-m", "embedscope", "watch", drop + "/", "--db", str(db), *FAST,
                                 "--interval", "0.5", "--settle", "0.5", "--json"], stdout=fo, stderr=fe, env=env)
    try:
        def wait_for(what, cond, timeout=240.0):
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if cond():
                    return
                assert proc.poll() is None, f"watch exited {proc.returncode} waiting for {what}\n{err.read_text()}"
                time.sleep(0.3)
            raise AssertionError(f"timed out waiting for {what}\n{err.read_text()}")

        wait_for("the daemon to start", lambda: "watching " in err.read_text())
        second = run_exact("watch", drop, "--db", db, *FAST, env=s3.subprocess_env())  # one watch per S3 database
        assert second.returncode == 3 and "is already watched" in second.stderr, second.stderr
        data = jpeg_bytes(77)
        s3.upload(f"{drop}/later/new.jpg", data)

        def batches():
            rows = [json.loads(x) for x in out.read_text().splitlines() if x.startswith("{")]
            return [r for r in rows if r["event"] == "batch"]

        wait_for("the upload to be ingested", lambda: sum(b["new"] for b in batches()) >= 1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, err.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    d = Database(db)
    assert d.read(S.SOURCES, ["path"]).column("path").to_pylist() == [f"{drop}/later/new.jpg"]
    assert d.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist() == [hashlib.sha256(data).hexdigest()]
    assert sum(b["new"] for b in batches()) == 1
