"""Walk drops and list candidate image files. No file is opened here.

A drop is a folder, a file, or an object-store prefix (``s3://bucket/incoming/``), listed
through :mod:`embedscope.objectstore`; its entries' paths are then full URIs.

Symlinks are never followed out of their drop: a folder link is walked only if its resolved
target lies inside the drop's resolved root. Every image-named path that is not a plain file
is still *listed*, with the reason it cannot be read in :attr:`FileEntry.problem` (a link to
outside the drop, a link loop, a dangling link, a FIFO or device), so the pipeline records
every path it saw (it is quarantined with that reason). Whether a link is followed is decided
again when the file is read (:mod:`embedscope.ingest.reading`), on what is actually opened.
Hidden files and folders (dot-names) are skipped, and so are files with extensions that are
not images.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from embedscope.errors import ConfigError
from embedscope.ingest.pathnames import stored_path
from embedscope.objectstore import is_uri, list_objects, resolve_options

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}
)


@dataclass(frozen=True)
class FileEntry:
    path: str  # absolute, as found (not resolved through symlinks), or an object URI
    drop: str  # absolute drop root it was found under (or the prefix URI)
    size_bytes: int
    mtime: dt.datetime  # UTC
    # for object URIs: the resolved options to read it with (credentials: never printed)
    storage_options: Mapping[str, str] | None = field(default=None, repr=False, compare=False)
    root: str = ""  # the resolved folder a read must stay under ("" = no check: URIs, query files)
    problem: str = ""  # why the scan already knows it cannot be read ("" = none)

    @property
    def is_object(self) -> bool:
        return is_uri(self.path)

    @property
    def folder_label(self) -> str:
        return Path(self.path).parent.name


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def scan_drops(
    drops: Iterable[str | os.PathLike[str]],
    *,
    storage_options: Mapping[str, str] | None = None,
) -> Iterator[FileEntry]:
    """Yield every image-named regular file under the drops, in sorted order per folder.

    ``storage_options`` (explicit ones, e.g. ``--storage-option``) apply to object-store drops.
    """
    for drop in drops:
        if is_uri(drop):
            yield from _scan_objects(str(drop), storage_options)
            continue
        root = Path(drop).expanduser().absolute()
        if not root.exists():
            raise ConfigError(f"drop folder not found: {drop}", "check the path")
        if root.is_file():
            entry = _entry(root, root.parent, root.resolve().parent)
            if entry:
                yield entry
            continue
        yield from _walk(root, root.resolve())


def _scan_objects(prefix: str, storage_options: Mapping[str, str] | None) -> Iterator[FileEntry]:
    """The image-named objects under ``prefix``; dot-named objects and "folders" are skipped."""
    options = resolve_options(prefix, storage_options)
    root = prefix.rstrip("/")
    for obj in list_objects(prefix, options):
        rel = obj.uri[len(root):].lstrip("/") if obj.uri.startswith(root) else obj.uri.rsplit("/", 1)[-1]
        if any(part.startswith(".") for part in rel.split("/")) or not is_image_name(obj.uri):
            continue
        drop = root if rel else root.rsplit("/", 1)[0]  # a single object: its "folder"
        yield FileEntry(path=obj.uri, drop=drop, size_bytes=obj.size, mtime=obj.mtime,
                        storage_options=options)


def _walk(root: Path, real_root: Path) -> Iterator[FileEntry]:
    stack = [root]
    visited: set[Path] = set()
    while stack:
        folder = stack.pop()
        real = folder.resolve()
        if real in visited or not _inside(real, real_root):
            continue
        visited.add(real)
        try:
            children = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for child in children:
            if child.name.startswith("."):
                continue
            try:
                is_dir = child.is_dir(follow_symlinks=True)
            except OSError:
                is_dir = False
            if is_dir:
                subdirs.append(Path(child.path))
            elif is_image_name(child.name):
                entry = _entry(Path(child.path), root, real_root)
                if entry:
                    yield entry
        stack.extend(reversed(subdirs))


def _entry(path: Path, drop: Path, real_root: Path) -> FileEntry | None:
    """The entry for an image-named path that is not a folder; ``None`` if it vanished."""
    problem = ""
    try:
        st = path.lstat()
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            problem = "dangling symlink"
        except (OSError, RuntimeError):
            problem = "symlink loop"
        else:
            if not _inside(target, real_root):
                problem = f"symlink points outside the drop (to {stored_path(str(target))})"
            else:
                try:
                    st = path.stat()
                except OSError:
                    return None
    if not problem and not stat.S_ISREG(st.st_mode):
        problem = "not a regular file (a FIFO)" if stat.S_ISFIFO(st.st_mode) else "not a regular file"
    return FileEntry(
        path=str(path),
        drop=str(drop),
        size_bytes=st.st_size if not problem else 0,
        mtime=dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc),
        root=str(real_root),
        problem=problem,
    )


def _inside(path: Path, root: Path) -> bool:
    return path == root or root in path.parents
