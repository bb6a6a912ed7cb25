"""Hostile input to the serving side (#14): SQL that would run forever or eat the memory, a
dashboard bound to a name that only looks like loopback, password guessing, oversized bodies
and uploads, stored paths that became FIFOs or huge files, malformed callback values, and a
killed `analyze` (``check --repair``). Real components throughout: LanceDB databases, DuckDB,
the Flask app, and for the slow tests a real `embedscope dashboard` (waitress) subprocess."""

from __future__ import annotations

import base64
import io
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pyarrow as pa
import pytest
from PIL import Image

from embedscope.errors import QueryError
from embedscope.hashing import sha256_bytes
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.sql import SqlLimits, run_sql
from tests.conftest import REPO, make_photo, run_cli, vectors_parquet
from tests.dashboard_db import running_dashboard

ENDLESS = "SELECT count(*) FROM range(1000000000000)"
MEMORY_HOG = "SELECT length(string_agg(repeat('x', 100), ',')) FROM range(100000000)"


# -- a small database written directly (no model needed) --------------------------------------


def _jpeg(seed: int, size=(96, 72)) -> bytes:
    buf = io.BytesIO()
    make_photo(seed, size).save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _tiny_db(root: Path, n: int = 3) -> tuple[Path, list[str], list[Path]]:
    """``n`` images whose originals are files under ``root/files``, with thumbnails."""
    db_path, files = root / "db", root / "files"
    files.mkdir(parents=True)
    db = Database(db_path, create=True)
    shas, paths = [], []
    for i in range(n):
        data = _jpeg(i)
        path = files / f"img{i}.jpg"
        path.write_bytes(data)
        shas.append(sha256_bytes(data))
        paths.append(path)
    now = pa.array([utc_now()] * n, pa.timestamp("us", tz="UTC"))
    db.upsert(S.IMAGES, pa.table({"sha256": shas, "path": [str(p) for p in paths], "label": ["a"] * n,
                                  "width": pa.array([96] * n, pa.int32()), "height": pa.array([72] * n, pa.int32()),
                                  "ingested_at": now, "thumbnail": [_jpeg(i, (40, 32)) for i in range(n)]}))
    return db_path, shas, paths


@pytest.fixture
def tiny(tmp_path):
    return _tiny_db(tmp_path)


# -- SQL limits -------------------------------------------------------------------------------


def test_run_sql_stops_an_endless_query_at_the_timeout_with_one_line(tiny):
    db = Database(tiny[0])
    t0 = time.monotonic()
    with pytest.raises(QueryError) as err:
        run_sql(db, ENDLESS, limits=SqlLimits(timeout_s=1.0))
    elapsed = time.monotonic() - t0
    assert elapsed < 30, elapsed  # stopped by the timeout, not run to the end (which never comes)
    text = err.value.one_line()
    assert "\n" not in text and "after 1 s (statement timeout)" in text and "--timeout" in text
    assert run_sql(db, "SELECT count(*) AS n FROM images").to_pylist() == [{"n": 3}]  # the next query runs


def test_cli_query_timeout_through_the_real_entry_point(tiny):
    t0 = time.monotonic()
    proc = run_cli("query", "--db", str(tiny[0]), ENDLESS, "--timeout", "1", check=False, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "statement timeout" in lines[0] and "raise --timeout" in lines[0], proc.stderr
    assert time.monotonic() - t0 < 60


def test_memory_hungry_query_is_stopped_by_the_memory_limit_with_one_line(tiny):
    db = Database(tiny[0])
    with pytest.raises(QueryError) as err:
        run_sql(db, MEMORY_HOG, limits=SqlLimits(memory_limit="300MB"))
    assert "(memory limit)" in err.value.one_line() and "--memory-limit" in err.value.one_line()
    # and through the CLI, measuring that one process's peak memory (the audit saw 6.36 GB without a limit)
    measure = ("import resource, subprocess, sys; p = subprocess.run(sys.argv[1:], capture_output=True, text=True); "
               "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); print(p.stderr)")
    proc = subprocess.run([sys.executable, "-c", measure, sys.executable, "-m", "embedscope", "query", "--db",
                           str(tiny[0]), MEMORY_HOG, "--memory-limit", "300MB"], capture_output=True, text=True,
                          timeout=180, env={**os.environ, "PYTHONPATH": str(REPO)})
    status, peak_kb = proc.stdout.split("\n", 1)[0].split()
    assert status == "2" and "(memory limit)" in proc.stdout, proc.stdout + proc.stderr
    print(f"peak RSS of the memory-limited CLI query: {int(peak_kb) / 1024:.0f} MB")
    assert int(peak_kb) / 1024 < 1200


def test_spilling_works_within_the_spill_limit_and_is_refused_past_it(tiny):
    db = Database(tiny[0])
    big_sort = "SELECT count(*) AS n FROM (SELECT i, repeat('x', 40) s FROM range(3000000) t(i) ORDER BY s, i DESC)"
    assert run_sql(db, big_sort, limits=SqlLimits(memory_limit="60MB", temp_limit="2GB", threads=1)).to_pylist() == [
        {"n": 3_000_000}]
    with pytest.raises(QueryError) as err:
        run_sql(db, big_sort, limits=SqlLimits(memory_limit="60MB", temp_limit="0B", threads=1))
    assert "limit)" in err.value.one_line() and "\n" not in err.value.one_line()


def test_query_rejects_a_size_without_unit(tiny):
    proc = run_cli("query", "--db", str(tiny[0]), "SELECT 1", "--memory-limit", "12", check=False)
    assert proc.returncode == 2 and "bad size '12'" in proc.stderr


# -- loopback, credentials, back-off -----------------------------------------------------------


@pytest.mark.parametrize("host, expected", [
    ("localhost", True), ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
    # a name spelled like loopback is judged by where it resolves: offline these do not resolve
    ("127.0.0.1.nip.io.invalid", False), ("127.0.0.1.example.invalid", False), ("", False),
])
def test_loopback_is_judged_on_the_resolved_addresses(host, expected):
    from embedscope.dashboard.app import is_loopback

    assert is_loopback(host) is expected


def test_cli_refuses_a_name_that_only_looks_like_loopback(tiny):
    proc = run_cli("dashboard", "--db", str(tiny[0]), "--host", "127.0.0.1.example.invalid", check=False)
    assert proc.returncode == 2 and "not a loopback address" in proc.stderr and "EMBEDSCOPE_DASHBOARD_AUTH" in proc.stderr


def test_credentials_from_file_env_and_argv(tmp_path):
    from embedscope.dashboard.auth import AUTH_ENV, resolve_credentials
    from embedscope.errors import ConfigError

    f = tmp_path / "auth"
    f.write_text("ann:fi le:pw\nignored\n")
    f.chmod(0o600)
    assert resolve_credentials(auth_file=str(f), environ={}) == ("ann", "fi le:pw")
    f.chmod(0o644)
    with pytest.raises(ConfigError) as err:
        resolve_credentials(auth_file=str(f), environ={})
    assert err.value.one_line().endswith(f"is readable by other users (mode 644) — chmod 600 {f}")
    assert resolve_credentials(auth_file=None, environ={AUTH_ENV: "bob:env"}) == ("bob", "env")
    with pytest.raises(ConfigError, match="USER:PASSWORD"):
        resolve_credentials(auth_file=None, environ={AUTH_ENV: "nopassword"})
    assert resolve_credentials(auth_file=None, environ={}) is None


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_wrong_passwords_back_off_per_client_without_blocking_others(tiny):
    from embedscope.dashboard.app import create_app

    c = create_app(str(tiny[0]), auth=("ann", "s3cret")).server.test_client()
    guesser = {"REMOTE_ADDR": "10.0.0.66"}
    codes = [c.get("/", headers=_basic("ann", f"guess{i}"), environ_base=guesser).status_code for i in range(20)]
    assert codes[:5] == [401] * 5 and set(codes[5:]) == {429}, codes
    locked = c.get("/", headers=_basic("ann", "s3cret"), environ_base=guesser)  # even the right one: locked out
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) >= 1
    # another client is not held up
    assert c.get("/", headers=_basic("ann", "s3cret"), environ_base={"REMOTE_ADDR": "10.0.0.7"}).status_code == 200
    assert c.get("/", environ_base={"REMOTE_ADDR": "10.0.0.8"}).status_code == 401  # no credentials: no failure


def test_backoff_lockout_doubles_up_to_the_cap():
    from embedscope.dashboard.auth import Backoff

    b = Backoff(free_failures=2, first_lockout_s=1.0, max_lockout_s=8.0)
    waits = []
    for i in range(8):
        b.failed("x", now=100.0)
        waits.append(b.retry_after("x", now=100.0))
    assert waits == [0, 1, 2, 4, 8, 8, 8, 8]
    b.succeeded("x")
    assert b.retry_after("x", now=100.0) == 0


# -- request bodies, uploads ------------------------------------------------------------------


def test_request_body_over_the_cap_is_refused_with_413(tiny):
    from embedscope.dashboard.app import create_app

    c = create_app(str(tiny[0]), max_body_bytes=1024 * 1024).server.test_client()
    resp = c.post("/_dash-update-component", data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
                  content_type="application/json")
    assert resp.status_code == 413


def _png_contents(size: tuple[int, int]) -> str:
    buf = io.BytesIO()
    Image.new("1", size).save(buf, "PNG")  # a blank bilevel image compresses to a few KB
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_upload_over_the_pixel_cap_is_refused_from_its_header(tiny):
    from embedscope.dashboard.search import search_upload

    result = search_upload(Database(tiny[0]), None, _png_contents((10_000, 9_000)), "huge.png", max_pixels=40_000_000)
    assert result.error == ("huge.png: the image is 10000×9000 = 90.0 Mpx, more than the 40 Mpx the dashboard "
                            "decodes — upload a smaller image, or use `embedscope similar FILE`")


def test_upload_decodes_are_capped_and_the_rest_told_busy(tiny):
    from embedscope.dashboard import originals
    from embedscope.dashboard.search import search_upload

    held = [originals.decode_slot(wait=0) for _ in range(originals.DECODE_SLOTS)]
    for slot in held:
        slot.__enter__()
    try:  # every slot taken (two uploads or originals decoding): the next upload is told, not queued
        result = search_upload(Database(tiny[0]), None, _png_contents((20, 20)), "small.png")
        assert result.error == "small.png: busy: 2 images are being decoded — retry in a moment"
    finally:
        for slot in held:
            slot.__exit__(None, None, None)


# -- originals on /image ----------------------------------------------------------------------


def _get_with_timeout(client, url: str, timeout: float = 10.0):
    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("resp", client.get(url)), daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), f"GET {url} hung for {timeout}s"
    return box["resp"]


def test_image_route_serves_originals_and_refuses_fifo_huge_symlink_changed(tiny, tmp_path):
    from embedscope.dashboard.app import create_app

    db_path, shas, paths = tiny
    c = create_app(str(db_path), max_original_bytes=1024 * 1024).server.test_client()
    ok = _get_with_timeout(c, f"/image/{shas[0]}")
    assert ok.status_code == 200 and ok.headers["X-Embedscope-Source"] == "file"
    assert "X-Embedscope-Note" not in ok.headers

    paths[0].unlink()
    os.mkfifo(paths[0])  # a writer-less FIFO: a plain open() would block forever
    fifo = _get_with_timeout(c, f"/image/{shas[0]}")
    assert fifo.status_code == 200 and fifo.headers["X-Embedscope-Source"] == "thumbnail"
    assert fifo.headers["X-Embedscope-Note"] == "original refused (not a regular file)"
    assert fifo.headers["Cache-Control"] == "no-store"

    paths[1].unlink()
    with open(paths[1], "wb") as fh:  # 3 GiB, sparse: refused from fstat, never read
        fh.truncate(3 * 2**30)
    huge = _get_with_timeout(c, f"/image/{shas[1]}")
    assert huge.headers["X-Embedscope-Source"] == "thumbnail"
    assert huge.headers["X-Embedscope-Note"] == "original refused (3072 MiB > the 1 MiB cap)"

    target = tmp_path / "elsewhere.jpg"
    target.write_bytes(paths[2].read_bytes())
    paths[2].unlink()
    paths[2].symlink_to(target)
    link = _get_with_timeout(c, f"/image/{shas[2]}")
    assert link.headers["X-Embedscope-Source"] == "thumbnail" and "original unavailable" in link.headers["X-Embedscope-Note"]

    paths[2].unlink()
    paths[2].write_bytes(_jpeg(99))
    changed = _get_with_timeout(c, f"/image/{shas[2]}")
    assert changed.headers["X-Embedscope-Note"] == "original changed since ingest"


# -- malformed callback input -----------------------------------------------------------------


def _callback(client, outputs: list[tuple[str, str]], inputs: list[tuple[str, str, object]], headers=None):
    payload = {
        "output": "...".join(f"{i}.{p}" for i, p in outputs).join(["..", ".."]) if len(outputs) > 1 else
        f"{outputs[0][0]}.{outputs[0][1]}",
        "outputs": [{"id": i, "property": p} for i, p in outputs] if len(outputs) > 1 else
        {"id": outputs[0][0], "property": outputs[0][1]},
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        "state": [],
    }
    return client.post("/_dash-update-component", json=payload, headers=headers or {})


def test_malformed_callback_values_give_one_line_not_http_500(tiny):
    from embedscope.dashboard import ids
    from embedscope.dashboard.app import create_app

    c = create_app(str(tiny[0])).server.test_client()
    c.get("/")  # Dash sets up its routes on the first request
    resp = _callback(c, [(ids.FLAGS_GALLERY, "children"), (ids.FLAGS_COUNT, "children"), (ids.FLAGS_PAGE, "data"),
                         (ids.FLAGS_PAGE_LABEL, "children")],
                     [(ids.FLAGS_KIND, "value", "novel"), (ids.FLAGS_PREV, "n_clicks", 0), (ids.FLAGS_NEXT, "n_clicks", 0),
                      (ids.SIDEBAR_LABEL, "value", None), (ids.SIDEBAR_CLUSTER, "value", None),
                      (ids.SIDEBAR_TAG, "value", None), (ids.SIDEBAR_FLAG, "value", None),
                      (ids.SIDEBAR_SCORE, "value", ["not-a-number", 1.0]), (ids.SIDEBAR_FOLDER, "value", None),
                      (ids.SIDEBAR_ZERO_SHOT, "value", None),
                      (ids.SIDEBAR_CONTEXT, "data", {"run_id": "no-such-run", "score_bounds": [0.0, 2.0]}),
                      (ids.FLAGS_PAGE, "data", 0)])  # the state, after the inputs
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    body = json.loads(resp.get_data(as_text=True))
    message = body["sideUpdate"][ids.CALLBACK_ERROR]["children"]
    assert "\n" not in message and ("not-a-number" in message or "no-such-run" in message), message


# -- a real server: responsiveness, 413, back-off, env auth -----------------------------------


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    db_path, shas, _ = _tiny_db(root)
    with running_dashboard(db_path, root / "server.log", "--sql-timeout", "6", "--max-body-mb", "1",
                           env={"EMBEDSCOPE_DASHBOARD_AUTH": "ann:s3cret"}, headers=_basic("ann", "s3cret")) as url:
        yield {"url": url, "shas": shas}


def _http(url: str, *, auth=None, data: bytes | None = None, headers=None, timeout: float = 10.0):
    req = urllib.request.Request(url, data=data, headers={**(headers or {}), **(_basic(*auth) if auth else {})})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return resp.status, dict(resp.headers), resp.read()


@pytest.mark.slow  # starts a real dashboard server
def test_real_server_stays_responsive_while_a_long_query_runs(real_server):
    from embedscope.dashboard import ids

    url, auth = real_server["url"], ("ann", "s3cret")
    outs = [(ids.SQL_TABLE, "columns"), (ids.SQL_TABLE, "data"), (ids.SQL_STATUS, "children"), (ids.SQL_SHAS, "data"),
            (ids.SQL_SHOW_ON_MAP, "disabled")]
    payload = json.dumps({
        "output": "...".join(f"{i}.{p}" for i, p in outs).join(["..", ".."]),
        "outputs": [{"id": i, "property": p} for i, p in outs],
        "inputs": [{"id": ids.SQL_RUN, "property": "n_clicks", "value": 1}],
        "state": [{"id": ids.SQL_INPUT, "property": "value", "value": ENDLESS}],
        "changedPropIds": [f"{ids.SQL_RUN}.n_clicks"],
    }).encode()
    box: dict = {}

    def long_query() -> None:
        t0 = time.monotonic()
        box["result"] = _http(url + "/_dash-update-component", auth=auth, data=payload, timeout=60,
                              headers={"Content-Type": "application/json"})
        box["seconds"] = time.monotonic() - t0

    t = threading.Thread(target=long_query)
    t.start()
    time.sleep(1.5)
    latencies = []
    for path in ["/", f"/thumb/{real_server['shas'][0]}", "/_dash-layout", f"/thumb/{real_server['shas'][1]}"]:
        t0 = time.monotonic()
        status, _, _ = _http(url + path, auth=auth, timeout=10)
        latencies.append(time.monotonic() - t0)
        assert status == 200
    assert max(latencies) < 5.0, latencies  # answered while the query still runs (it takes >= 6 s)
    t.join(60)
    status, _, body = box["result"]
    assert status == 200 and "statement timeout" in body.decode() and "--sql-timeout" in body.decode()
    assert box["seconds"] < 20, box
    print(f"page latencies during the long query: {[f'{s:.2f}' for s in latencies]} s; "
          f"the query stopped after {box['seconds']:.1f} s")


@pytest.mark.slow  # starts a real dashboard server
def test_real_server_refuses_a_big_body_before_reading_it(real_server):
    host, port = real_server["url"].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        auth = _basic("ann", "s3cret")["Authorization"]
        s.sendall(f"POST /_dash-update-component HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {200 * 2**20}\r\n\r\n".encode())
        s.sendall(b"{" * 1024)  # the other 200 MB never come
        t0 = time.monotonic()
        head = s.recv(4096).decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert time.monotonic() - t0 < 5


@pytest.mark.slow  # starts a real dashboard server
def test_real_server_guessing_gets_429_and_the_right_password_works_after_the_lockout(real_server):
    url = real_server["url"]
    t0 = time.monotonic()
    codes = []
    for i in range(300):
        try:
            codes.append(_http(url + "/", auth=("ann", f"wrong{i}"))[0])
        except urllib.error.HTTPError as exc:
            codes.append(exc.code)
    seconds = time.monotonic() - t0
    checked = codes.count(401)  # a guess is checked again each time a lockout (2 s, doubling) ran out
    assert 5 <= checked <= 9 and codes.count(429) == 300 - checked, {c: codes.count(c) for c in set(codes)}
    print(f"300 wrong guesses: {checked} checked, {300 - checked} refused with 429, in {seconds:.1f} s")
    # the server sees every test client as 127.0.0.1, so the lockout holds for the right password
    # too; once it runs out, the right password works (another address is never held: unit test above)
    with pytest.raises(urllib.error.HTTPError) as err:
        _http(url + "/", auth=("ann", "s3cret"))
    assert err.value.code == 429
    time.sleep(int(err.value.headers["Retry-After"]) + 0.5)
    assert _http(url + "/", auth=("ann", "s3cret"))[0] == 200


# -- check / repair after killed analyze runs -------------------------------------------------


def _run_ids_without_runs_row(db: Database) -> int:
    return run_sql(db, "SELECT count(*) AS n FROM flags WHERE run_id NOT IN (SELECT run_id FROM runs)").to_pylist()[0]["n"]


def _analyze(db_path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "embedscope", "analyze", "--db", str(db_path), "--project", "pca",
                             "--cluster", "kmeans", "--k", "4"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO)})


def _kill_when_results_appear(db_path: Path, proc: subprocess.Popen, timeout: float) -> bool:
    """kill -9 ``proc`` right after its first result commit (a new ``clusters`` version) lands."""
    versions = db_path / "clusters.lance" / "_versions"
    before = set(os.listdir(versions)) if versions.exists() else set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if versions.exists() and set(os.listdir(versions)) - before:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow  # five real `embedscope analyze` subprocesses killed with SIGKILL
def test_check_finds_and_repairs_what_killed_analyze_runs_leave(tmp_path):
    from embedscope.analysis.synthetic import make_blobs
    from embedscope.analysis.vectors_import import import_vectors
    from embedscope.store.check import check

    syn = make_blobs(n_per_blob=300, n_blobs=4, n_planted=20, n_outliers=30, n_dups=5, seed=3)
    db_path = tmp_path / "db"
    import_vectors(Database(db_path, create=True), vectors_parquet(tmp_path / "v.parquet", syn.ids, syn.X, syn.labels),
                   model="syn")
    t0 = time.monotonic()
    assert _analyze(db_path).wait(300) == 0
    full = time.monotonic() - t0
    rng = random.Random(14)
    delays = [rng.uniform(0.5, full) for _ in range(4)]
    for delay in delays:
        proc = _analyze(db_path)
        try:
            proc.wait(delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    # the fifth kill lands mid-write by construction: right after the first result commit
    assert _kill_when_results_appear(db_path, _analyze(db_path), timeout=300)

    db = Database(db_path)
    report = check(db, grace_s=0)
    assert report.orphan_runs and report.orphan_results.get(S.CLUSTERS), report.as_dict()
    assert _run_ids_without_runs_row(db) == report.orphan_results.get(S.FLAGS, 0)
    listed = run_cli("check", "--db", str(db_path), "--grace", "0", "--json", check=False)
    assert listed.returncode == 1 and json.loads(listed.stdout)["orphan_runs"] == report.orphan_runs
    # the default grace leaves the fresh run ids alone (an analyze might still be writing them)
    assert run_cli("check", "--db", str(db_path), check=False).returncode == 0

    repaired = run_cli("check", "--db", str(db_path), "--grace", "0", "--repair")
    assert repaired.stdout.startswith(f"check {db_path}: repaired:"), repaired.stdout
    assert run_cli("check", "--db", str(db_path), "--grace", "0").stdout.strip().endswith("clean: nothing to repair")
    db = Database(db_path)
    assert _run_ids_without_runs_row(db) == 0
    for table in (S.CLUSTERS, S.PROJECTIONS, S.METRICS, S.RUN_MODELS):
        assert run_sql(db, f"SELECT count(*) AS n FROM {table} WHERE run_id NOT IN (SELECT run_id FROM runs)"
                       ).to_pylist() == [{"n": 0}]
    stats = json.loads(run_cli("stats", "--db", str(db_path), "--json").stdout)
    assert stats["runs"] == run_sql(db, "SELECT count(*) AS n FROM runs").to_pylist()[0]["n"] >= 1
    print(f"full analyze {full:.1f}s; kills after {[round(d, 1) for d in delays]} s + one at the first result "
          f"commit; orphan runs found and removed: {len(report.orphan_runs)}")


def test_check_repairs_planted_orphan_embeddings_and_stale_quarantine(tiny):
    from embedscope.store.check import check, repair

    db_path, shas, paths = tiny
    db = Database(db_path)
    vec = pa.array([[1.0, 0.0]] * 2, pa.list_(pa.float32(), 2))
    db.upsert("embeddings_m", pa.table({"sha256": [shas[0], "f" * 64], "model": ["m", "m"], "variant": ["full"] * 2,
                                        "vector": vec}))
    old, new = utc_now(), utc_now()
    ts = pa.timestamp("us", tz="UTC")
    db.upsert(S.QUARANTINE, pa.table({"sha256": ["e" * 64, "d" * 64], "path": [str(paths[0]), "/gone.jpg"],
                                      "seen_at": pa.array([old, old], ts)}))
    db.upsert(S.SOURCES, pa.table({"sha256": [shas[0]], "path": [str(paths[0])], "seen_at": pa.array([new], ts)}))
    db.append(S.METRICS, pa.table({"run_id": ["no-timestamp-run"], "name": ["silhouette"]}))
    proc = run_cli("check", "--db", str(db_path), check=False)
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0] == (f"check {db_path}: found: 1 orphan embeddings, 1 result rows of 1 unfinished "
                                           "runs, 1 stale quarantine rows")
    report = repair(Database(db_path))
    assert report.problems == 3 and len(report.actions) == 3
    db = Database(db_path)
    assert check(db).problems == 0
    with db.writer_lock():  # how the daemon calls it at start, inside its own lock
        assert repair(db, lock_held=True).problems == 0
    assert db.read("embeddings_m", ["sha256"]).column("sha256").to_pylist() == [shas[0]]
    assert db.read(S.QUARANTINE, ["path"]).column("path").to_pylist() == ["/gone.jpg"]


def test_an_object_store_original_is_refused_by_its_size_before_it_is_read(s3):
    from embedscope.dashboard.originals import Refused, read_remote

    uri = s3.prefix("originals") + "/big.jpg"
    s3.upload(uri, b"\xff\xd8" + b"\0" * 3000)
    with pytest.raises(Refused, match=r"2\.9 KiB > the 1000 bytes cap"):
        read_remote(uri, {}, max_bytes=1000)  # credentials: the environment the `s3` fixture set
    assert read_remote(uri, {}, max_bytes=10_000)[:2] == b"\xff\xd8"
