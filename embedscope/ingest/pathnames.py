"""How a file's path is stored: one UTF-8 string that is both readable and lossless.

POSIX file names are bytes; Arrow, Lance and DuckDB store text as UTF-8. Python names a file
whose bytes are not UTF-8 with surrogate escapes (``os.fsdecode(b"x\\xff.jpg") ==
"x\\udcff.jpg"``), which no UTF-8 column accepts. So every path is stored in this form:

- a path that is valid UTF-8 and holds no backslash escape is stored **as it is** (every
  ordinary path, and every path stored before this rule existed);
- any other path is stored with each byte that is not UTF-8 written ``\\xNN`` (two lowercase
  hex digits) and each backslash written ``\\\\``: ``x<0xff>.jpg`` is stored ``x\\xff.jpg``.

:func:`path_bytes` reverses it (``\\\\`` → ``\\``, ``\\xNN`` → the byte ``NN``, a backslash
followed by anything else stays as it is), so ``path_bytes(stored_path(p)) ==
os.fsencode(p)`` for every path: the stored path leads back to the same file. A plain name
that itself contains ``\\x41`` or ``\\\\`` is stored escaped for that reason, and still
round-trips.

Object-store URIs are already text and pass through unchanged (unless they hold a backslash
escape, which is escaped like a file name).
"""

from __future__ import annotations

import os
import re

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2})")


def stored_path(path: str | os.PathLike[str]) -> str:
    """The form of ``path`` (as Python's ``os`` functions give it) kept in the tables."""
    text = os.fspath(path)
    if "\\" not in text:  # the usual case, checked at C speed: no escape to read, valid UTF-8?
        try:
            text.encode("utf-8")
            return text
        except UnicodeEncodeError:
            pass
    raw = os.fsencode(text)
    try:
        plain = raw.decode("utf-8")
    except UnicodeDecodeError:
        plain = None
    if plain is not None and path_bytes(plain) == raw:
        return plain
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8
            out.append(f"\\x{code - 0xDC00:02x}")
        elif char == "\\":
            out.append("\\\\")
        else:
            out.append(char)
    return "".join(out)


def path_bytes(stored: str) -> bytes:
    """The file name bytes a stored path stands for: ``open(path_bytes(row["path"]), "rb")``
    opens the file the row was made from."""
    parts: list[bytes] = []
    pos = 0
    for match in _ESCAPE.finditer(stored):
        parts.append(stored[pos:match.start()].encode("utf-8", "surrogateescape"))
        token = match.group(1)
        parts.append(b"\\" if token == "\\" else bytes([int(token[1:], 16)]))
        pos = match.end()
    parts.append(stored[pos:].encode("utf-8", "surrogateescape"))
    return b"".join(parts)


def os_path(stored: str) -> str:
    """A stored path as Python's ``os`` functions name the file (surrogate-escaped)."""
    return os.fsdecode(path_bytes(stored))
