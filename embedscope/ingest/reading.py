"""Reading a listed file safely: it cannot escape its drop, block, or blow up memory.

Every read of a drop file (the hash stage, then the decode stage) goes through
:func:`open_entry`, which

1. resolves the path and refuses it unless the real path lies under the drop's resolved root
   (the symlink policy: a link is followed only when its target is inside the drop *at read
   time*; a link pointing outside, a link loop and a dangling link are refused with that
   reason);
2. opens the resolved path with ``O_NOFOLLOW | O_NONBLOCK`` (a FIFO cannot block the read);
3. checks the **open descriptor**: a regular file (not a FIFO, device or folder), whose real
   path (``/proc/self/fd/N``) is still under the drop root — so a link or parent folder
   retargeted between the check in 1 and the open is caught on what was actually opened;
4. checks its size from ``fstat`` against ``--max-file-size`` *before* reading a byte.

The decode stage reads the bytes once into memory (at most the size limit) and checks their
SHA-256 against the one the hash stage computed, so the bytes decoded are exactly the bytes
hashed: a file rewritten or retargeted in between is refused ("changed while it was being
read") instead of being stored under another content's hash.

A refusal is an :class:`UnreadableFile`: about the *path*, not the content, so the pipeline
quarantines the path with an empty sha256 and never blames a content hash for it.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from typing import Iterator

from embedscope.errors import DecodeError
from embedscope.hashing import CHUNK
from embedscope.ingest.pathnames import stored_path
from embedscope.ingest.scan import FileEntry

_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_PROC_FD = "/proc/self/fd"


class UnreadableFile(DecodeError):
    """A listed file that cannot be read as named (outside the drop, gone, not a regular file,
    too large, changed while read). Quarantined by path, with an empty sha256."""


def human_size(n: int) -> str:
    """``4.0 GiB``, ``256 MiB``, ``12 bytes``: a size for a message."""
    for power, unit in ((3, "GiB"), (2, "MiB"), (1, "KiB")):
        scale = 1024**power
        if n >= scale:
            return f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def too_large(size: int, limit: int) -> UnreadableFile:
    return UnreadableFile(f"file is {human_size(size)}, over the {human_size(limit)} limit (--max-file-size)")


def inside(path: str, root: str) -> bool:
    """True if ``path`` is ``root`` or below it (both resolved, absolute)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _reason(exc: OSError, path: str) -> str:
    if exc.errno == errno.ENOENT:
        return "dangling symlink" if os.path.islink(path) else "file vanished before it could be read"
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return f"cannot read file: {exc.strerror or exc}"


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_entry(entry: FileEntry, max_bytes: int) -> tuple[int, os.stat_result]:
    """A read-only descriptor on ``entry``'s file and its ``fstat``, after the checks above.
    Raises :class:`UnreadableFile`; the caller closes the descriptor."""
    if entry.problem:
        raise UnreadableFile(entry.problem)
    path, root = entry.path, entry.root
    target, flags = path, _OPEN_FLAGS
    if root:
        try:
            target = os.path.realpath(path, strict=True)
        except OSError as exc:
            raise UnreadableFile(_reason(exc, path)) from None
        if not inside(target, root):
            raise UnreadableFile(f"symlink points outside the drop (to {stored_path(target)})")
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(target, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the resolved path's last part became a link meanwhile
            raise UnreadableFile("symlink changed while it was being read") from None
        raise UnreadableFile(_reason(exc, path)) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile(f"not a regular file ({_kind(st.st_mode)})")
        if root and os.path.isdir(_PROC_FD):
            real = os.readlink(f"{_PROC_FD}/{fd}")
            if not inside(real, root):
                raise UnreadableFile(f"symlink points outside the drop (to {stored_path(real)})")
        if st.st_size > max_bytes:
            raise too_large(st.st_size, max_bytes)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def hash_entry_file(entry: FileEntry, max_bytes: int) -> str:
    """The SHA-256 of ``entry``'s bytes, streamed from one checked descriptor (constant
    memory). Raises :class:`UnreadableFile`."""
    if entry.is_object:
        return _hash_object(entry, max_bytes)
    fd, _ = open_entry(entry, max_bytes)
    h = hashlib.sha256()
    read = 0
    try:
        with open(fd, "rb", buffering=0, closefd=False) as fh:
            buf = bytearray(CHUNK)
            view = memoryview(buf)
            while n := fh.readinto(buf):
                read += n
                if read > max_bytes:
                    raise too_large(read, max_bytes)
                h.update(view[:n])
    except OSError as exc:
        raise UnreadableFile(_reason(exc, entry.path)) from None
    finally:
        os.close(fd)
    return h.hexdigest()


def read_entry_bytes(entry: FileEntry, sha256: str | None, max_bytes: int) -> bytes:
    """All of ``entry``'s bytes (at most ``max_bytes``), from one checked descriptor; with
    ``sha256``, they must still hash to it. Raises :class:`UnreadableFile`."""
    if entry.is_object:
        data = _read_object(entry, max_bytes)
    else:
        fd, st = open_entry(entry, max_bytes)
        try:
            with open(fd, "rb", buffering=0, closefd=False) as fh:
                data = fh.read(max_bytes + 1)  # regular file: read() returns all of it (at most this)
        except OSError as exc:
            raise UnreadableFile(_reason(exc, entry.path)) from None
        finally:
            os.close(fd)
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise UnreadableFile("file changed while it was being read")
    return data


def _object_stream(entry: FileEntry, max_bytes: int) -> Iterator[bytes]:
    """The object's bytes in chunks, refused beyond ``max_bytes`` (listed or actual size)."""
    from embedscope.objectstore import describe, open_input

    if entry.size_bytes > max_bytes:
        raise too_large(entry.size_bytes, max_bytes)
    read = 0
    try:
        with open_input(entry.path, entry.storage_options) as stream:
            while chunk := stream.read(CHUNK):
                read += len(chunk)
                if read > max_bytes:
                    raise too_large(read, max_bytes)
                yield chunk
    except OSError as exc:
        raise UnreadableFile(f"cannot read file: {describe(exc)}") from None


def _hash_object(entry: FileEntry, max_bytes: int) -> str:
    h = hashlib.sha256()
    for chunk in _object_stream(entry, max_bytes):
        h.update(chunk)
    return h.hexdigest()


def _read_object(entry: FileEntry, max_bytes: int) -> bytes:
    return b"".join(_object_stream(entry, max_bytes))
