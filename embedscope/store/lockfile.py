"""An OS file lock held for a process's lifetime (``fcntl.flock``).

The kernel frees the lock when the holding process dies, however it dies (``kill -9``
included), so a lock left by a crashed process is never stale: the next process simply gets
it. The file's content (who holds it) is informative only; it is overwritten by each holder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from embedscope.errors import DatabaseLockedError


@dataclass
class HeldLock:
    path: Path
    fd: int
    previous: dict  # what the file said before we took it (a dead holder's pid, ...)

    def release(self) -> None:
        """Release cleanly: blank the holder info (a killed holder's info stays, and is reported)."""
        if self.fd >= 0:
            try:
                os.ftruncate(self.fd, 0)
            except OSError:
                pass
            os.close(self.fd)  # closing releases the flock
            self.fd = -1


def read_holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def describe_holder(info: dict) -> str:
    if not info:
        return "unknown holder"
    return (f"{info.get('owner', '?')} pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"since {info.get('since', '?')}")


def acquire(
    path: Path,
    *,
    owner: str,
    wait: float = 0.0,
    stop: threading.Event | None = None,
    what: str = "database",
    hint: str = "stop it first, or pass --wait-lock SECONDS (or inf) to wait for it",
) -> HeldLock | None:
    """Take the lock at ``path``; retry for ``wait`` seconds (``inf``: for ever).

    Returns ``None`` if ``stop`` was set while waiting; raises :class:`DatabaseLockedError`
    naming the holder once ``wait`` has passed.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
            if time.monotonic() >= deadline:
                raise DatabaseLockedError(f"{what} is in use by another process ({describe_holder(read_holder(path))})", hint)
            if stop is not None and stop.wait(0.2):
                os.close(fd)
                return None
            if stop is None:
                time.sleep(0.2)
    except BaseException:
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass
        raise
    previous = read_holder(path)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "owner": owner,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    return HeldLock(path, fd, previous)


def pid_alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
