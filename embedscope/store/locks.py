"""The database's locks, named by what they protect; how each is held depends on the store.

- :data:`WRITER`: one writer at a time (an ingest, an analysis, the daemon's batch);
- :data:`WATCH`: one ``embedscope watch`` daemon per database, held for its lifetime.

Callers go through :meth:`Database.writer_lock <embedscope.store.db.Database.writer_lock>` and
:meth:`Database.watch_lock <embedscope.store.db.Database.watch_lock>`; :func:`hold` picks the
mechanism: a local folder gets an OS file lock (:mod:`embedscope.store.lockfile`, freed by the
kernel when its process dies, however it dies), an ``s3://`` database a renewed lease object
(:mod:`embedscope.store.objectlock`, a killed holder's lease runs out after 60 s), and other
object stores (gs://, az://) no lock at all, with a warning: run one writer at a time there.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping

from embedscope.errors import DatabaseLockedError
from embedscope.store import lockfile, objectlock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LockKind:
    """One lock of a database: its name, its file (or object) in the database, and how a
    refusal reads."""

    name: str
    file: str
    what: str  # "{uri}" is filled in
    hint: str


WRITER = LockKind("writer lock", ".embedscope-writer.lock", "{uri} (writer lock)",
                  "wait for it to finish, stop it, or pass --wait-lock SECONDS to wait")
WATCH = LockKind("watch lock", ".embedscope-watch.lock", "{uri} is already watched",
                 "one watch per database: stop the other one, or pass --wait-lock SECONDS (or inf) "
                 "to wait as a standby")


@contextlib.contextmanager
def hold(uri: str, storage_options: Mapping[str, str] | None, kind: LockKind, *, owner: str,
         wait: float = 0.0, stop: threading.Event | None = None) -> Iterator[bool]:
    """Hold ``kind`` on the database at ``uri``, retrying for ``wait`` seconds (``inf``: for ever).

    Yields True once held, False if ``stop`` was set while waiting; raises
    :class:`DatabaseLockedError` naming the holder once ``wait`` has passed. While it waits it
    logs once who holds the lock."""
    from embedscope.objectstore import is_uri, scheme

    what = kind.what.format(uri=uri)
    local = not is_uri(uri)
    if not local and not scheme(uri).startswith("s3"):
        log.warning("no %s on %s: run one writer at a time on this store", kind.name, uri)
        yield True
        return

    def take(seconds: float) -> lockfile.HeldLock | objectlock.ObjectLease | None:
        if local:
            return lockfile.acquire(Path(uri) / kind.file, owner=owner, wait=seconds, stop=stop,
                                    what=what, hint=kind.hint)
        return objectlock.acquire(uri.rstrip("/") + "/" + kind.file, storage_options, owner=owner,
                                  wait=seconds, stop=stop, what=what, hint=kind.hint)

    try:
        held = take(0.0)
    except DatabaseLockedError as exc:
        if wait <= 0:
            raise
        how_long = "as long as it takes" if wait == float("inf") else f"up to {wait:g}s"
        log.info("waiting %s: %s", how_long, exc.message)
        held = take(wait)
    if held is None:
        yield False
        return
    if local:  # a lease logs its own take-over
        _note_takeover(held.previous)
    try:
        yield True
    finally:
        held.release()


def _note_takeover(previous: dict) -> None:
    """Log a local lock left by a process that is gone (the kernel freed it; we took it)."""
    pid = previous.get("pid")
    if pid in (None, os.getpid()):
        return
    if previous.get("host") == socket.gethostname() and lockfile.pid_alive(pid):
        return
    log.info("lock left by %s taken over (that process is gone; the OS freed its lock)",
             lockfile.describe_holder(previous))
