"""Streamed SHA-256 of files: the identity of an image, computed before any decoding."""

from __future__ import annotations

import hashlib
import os
from typing import Mapping

from embedscope.objectstore import is_uri, open_input

CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike[str], *, storage_options: Mapping[str, str] | None = None) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB chunks (constant memory).

    ``path`` may be an object URI (``s3://bucket/key``), read with ``storage_options``.
    Raises ``OSError`` if it cannot be read.
    """
    if is_uri(path):
        h = hashlib.sha256()
        with open_input(str(path), storage_options) as stream:
            while chunk := stream.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while True:
            n = fh.readinto(buf)
            if not n:
                break
            h.update(view[:n])
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
