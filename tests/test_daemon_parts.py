"""The daemon's building blocks that need no model: locks, table repair, settings, CLI errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from embedscope.errors import ConfigError, DatabaseLockedError
from embedscope.store import lockfile
from embedscope.config import WatchSettings
from embedscope.store import schema as S
from embedscope.store.db import LOCK_FILE, Database
from embedscope.store.locks import WATCH
from tests.conftest import REPO, run_cli

HOLD_WATCH_LOCK = """
import sys, time
from pathlib import Path
from embedscope.store import lockfile
lockfile.acquire(Path(sys.argv[1]), owner="watch")
print("locked", flush=True)
time.sleep(600)
"""

HOLD_WRITER_LOCK = """
import sys, time
from embedscope.store.db import Database
with Database(sys.argv[1], create=True).writer_lock(owner="ingest"):
    print("locked", flush=True)
    time.sleep(600)
"""


def hold(code: str, arg: str) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", code, arg], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_watch_lock_of_a_killed_process_is_taken_over(tmp_path):
    path = tmp_path / WATCH.file
    proc = hold(HOLD_WATCH_LOCK, str(path))
    try:
        with pytest.raises(DatabaseLockedError) as info:
            lockfile.acquire(path, owner="watch", what="db is already watched")
        assert f"pid {proc.pid}" in info.value.message and "--wait-lock" in info.value.hint
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held = lockfile.acquire(path, owner="watch")  # the kernel freed it: no stale-lock cleanup needed
    try:
        assert held.previous["pid"] == proc.pid and not lockfile.pid_alive(proc.pid)
        assert lockfile.read_holder(path)["pid"] == os.getpid()
    finally:
        held.release()
    assert lockfile.read_holder(path) == {}  # a clean release leaves nothing that looks stale


def test_writer_lock_of_a_killed_ingest_is_freed(tmp_path):
    db_dir = tmp_path / "db"
    proc = hold(HOLD_WRITER_LOCK, str(db_dir))
    db = Database(db_dir)
    try:
        with pytest.raises(DatabaseLockedError, match=f"pid {proc.pid}"):
            with db.writer_lock(wait=0.0):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with db.writer_lock(wait=0.0, owner="watch"):
        assert (db_dir / LOCK_FILE).exists()


def test_waiting_for_a_lock_stops_when_asked(tmp_path):
    import threading

    path = tmp_path / WATCH.file
    first = lockfile.acquire(path, owner="watch")
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    assert lockfile.acquire(path, owner="watch", wait=float("inf"), stop=stop) is None
    assert time.monotonic() - t0 < 30
    first.release()


@pytest.mark.parametrize("which", ["watch_lock", "writer_lock"])
def test_the_database_locks_say_what_they_lock_and_stop_waiting_when_asked(tmp_path, which):
    import threading

    db = Database(tmp_path / "db", create=True)
    lock = getattr(db, which)
    with lock(owner="first") as held:
        assert held
        with pytest.raises(DatabaseLockedError, match="first pid"):
            with lock(wait=0.0):
                pass
        stop = threading.Event()
        threading.Timer(0.5, stop.set).start()
        with lock(wait=float("inf"), stop=stop) as second:
            assert second is False
    with lock(wait=0.0) as again:  # released on leaving the block
        assert again


def test_a_table_whose_creation_was_killed_is_repaired(tmp_path):
    db_dir = tmp_path / "db"
    (db_dir / "sources.lance" / "_versions").mkdir(parents=True)  # what a kill mid-create leaves
    db = Database(db_dir)
    assert db.has_table(S.SOURCES)
    with pytest.raises(ValueError):
        db.count(S.SOURCES)
    db.ensure_table(S.SOURCES, S.SOURCES_SCHEMA)  # what `watch` does at start, under the lock
    db.refresh()
    assert db.count(S.SOURCES) == 0 and db.read(S.SOURCES).schema.names == S.SOURCES_SCHEMA.names


def test_watch_settings_are_checked():
    with pytest.raises(ConfigError, match="--interval"):
        WatchSettings(interval=0)
    with pytest.raises(ConfigError, match="--max-files-per-batch"):
        WatchSettings(max_files_per_batch=0)
    with pytest.raises(ConfigError, match="--settle"):
        WatchSettings(settle=-1)


def test_watch_cli_fails_fast_with_one_line(tmp_path):
    missing = run_cli("watch", str(tmp_path / "nope"), "--db", str(tmp_path / "db"), "--weights", "random",
                      check=False, timeout=120)
    assert missing.returncode != 0
    assert "drop folder not found" in missing.stderr and "Traceback" not in missing.stderr
    bad = run_cli("watch", str(tmp_path), "--db", str(tmp_path / "db"), "--interval", "0", check=False, timeout=120)
    assert bad.returncode != 0 and "--interval must be more than 0" in bad.stderr
