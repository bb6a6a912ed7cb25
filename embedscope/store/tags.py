"""The curator's tags: an append-only log in the ``tags`` table, the current state a SQL view.

Every tag or untag appends one row per image (sha256, tag, action ``add``/``remove``, note,
source, tagged_at) under the database's writer lock; nothing is ever updated or deleted, so the log
says who did what from where. The current tags are the images whose latest action per
(sha256, tag) is ``add``: SQL's ``image_tags`` view and ``images_latest.tags``
(:mod:`embedscope.store.sql`), and :func:`current_tags` here.

Built-in tags with a meaning (docs/curation.md): ``exclude`` (left out of an export),
``keep`` (kept even when a flag would exclude it), ``reviewed``, ``relabel:<label>`` (the
export's label). Any other name is a saved selection.

>>> tag_images(db, ["3f2a..."], "exclude", note="watermark", source="cli")  # doctest: +SKIP
1
"""

from __future__ import annotations

from typing import Iterable, Sequence

import pyarrow as pa

from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.filters import isin, literal

EXCLUDE = "exclude"
KEEP = "keep"
REVIEWED = "reviewed"
RELABEL_PREFIX = "relabel:"
BUILTIN_TAGS = (EXCLUDE, KEEP, REVIEWED, RELABEL_PREFIX + "<label>")
SOURCES = ("dashboard", "cli", "api", "sql-result")
MAX_TAG_LEN = 200


def check_tag(tag: str) -> str:
    """``tag`` stripped; a :class:`ConfigError` if it is empty, too long or ``relabel:`` with no label."""
    name = (tag or "").strip()
    if not name or len(name) > MAX_TAG_LEN or any(c in name for c in "\n\r\t"):
        raise ConfigError(f"bad tag name {tag!r}", f"a tag is 1-{MAX_TAG_LEN} characters on one line, e.g. exclude")
    if name.startswith(RELABEL_PREFIX) and not name[len(RELABEL_PREFIX):].strip():
        raise ConfigError(f"tag {tag!r} names no label", "write relabel:<label>, e.g. relabel:cats")
    return name


def relabel_target(tag: str) -> str | None:
    """The label of a ``relabel:<label>`` tag, else None."""
    return tag[len(RELABEL_PREFIX):].strip() if tag.startswith(RELABEL_PREFIX) else None


def tag_images(db: Database, shas: Iterable[str], tag: str, *, note: str | None = None, remove: bool = False,
               source: str = "api", wait_lock: float = 0.0) -> int:
    """Append one ``add`` (or ``remove``) row per distinct image in ``shas``; returns how many.

    Every sha256 must be a stored image (else :class:`NotFoundError` naming the first unknown
    ones). Takes the writer lock (waiting ``wait_lock`` seconds for another writer)."""
    name = check_tag(tag)
    if source not in SOURCES:
        raise ConfigError(f"unknown tag source {source!r}", f"one of: {', '.join(SOURCES)}")
    wanted = list(dict.fromkeys(s.strip() for s in shas if s and s.strip()))
    if not wanted:
        return 0
    _check_known(db, wanted)
    now = utc_now()
    rows = pa.table({
        "sha256": wanted, "tag": [name] * len(wanted), "action": ["remove" if remove else "add"] * len(wanted),
        "note": [note] * len(wanted), "source": [source] * len(wanted), "tagged_at": [now] * len(wanted),
    })
    with db.writer_lock(wait=wait_lock, owner=f"tag ({source})"):
        db.append(S.TAGS, rows)
    db.refresh()
    return len(wanted)


def _check_known(db: Database, shas: Sequence[str]) -> None:
    known: set[str] = set()
    if db.has_table(S.IMAGES):
        for start in range(0, len(shas), 5000):
            chunk = shas[start:start + 5000]
            known.update(db.read(S.IMAGES, ["sha256"], where=isin("sha256", chunk)).column("sha256").to_pylist())
    unknown = [s for s in shas if s not in known]
    if unknown:
        raise NotFoundError(f"{len(unknown)} of {len(shas)} sha256 are no stored image (first: {unknown[0]})",
                            "select images from images / images_latest")


def shas_where(db: Database, where: str) -> list[str]:
    """The sha256 of every image in ``images_latest`` matching the SQL condition ``where``."""
    return shas_from_sql(db, f"SELECT sha256 FROM images_latest WHERE {where}")


def shas_from_sql(db: Database, sql: str) -> list[str]:
    """The ``sha256`` column of a read-only ``SELECT`` (no row limit)."""
    from embedscope.store.sql import run_sql

    table = run_sql(db, sql, limit=None)
    if "sha256" not in table.column_names:
        raise ConfigError("the query returns no sha256 column", "SELECT sha256 FROM ... WHERE ...")
    return [s for s in table.column("sha256").to_pylist() if s]


def shas_of_paths(db: Database, paths: Iterable[str]) -> list[str]:
    """The sha256 of each path (any path in ``sources``, or a sha256 itself); unknown paths raise."""
    wanted = [p.strip() for p in paths if p and p.strip()]
    found: dict[str, str] = {}
    for table, col in ((S.SOURCES, "path"), (S.IMAGES, "path"), (S.IMAGES, "sha256")):
        missing = [p for p in wanted if p not in found]
        if missing and db.has_table(table):
            rows = db.read(table, ["sha256", col], where=isin(col, missing)).to_pylist()
            found.update({r[col]: r["sha256"] for r in rows})
    unknown = [p for p in wanted if p not in found]
    if unknown:
        raise NotFoundError(f"{len(unknown)} path(s) are not in sources (first: {unknown[0]})",
                            "give paths as ingest stored them (absolute), or sha256")
    return [found[p] for p in wanted]


def current_tags(db: Database) -> pa.Table:
    """The ``image_tags`` view: (sha256, tag, note, tagged_at) of every tag now on an image."""
    from embedscope.store.sql import run_sql

    return run_sql(db, "SELECT * FROM image_tags ORDER BY tag, sha256", limit=None)


def tag_log(db: Database) -> pa.Table:
    """The whole ``tags`` log, oldest first (empty with its schema on a fresh database)."""
    if not db.has_table(S.TAGS):
        return S.TAGS_SCHEMA.empty_table()
    return db.read(S.TAGS).sort_by("tagged_at")


def tags_of(db: Database, sha: str) -> list[dict]:
    """The current tags (tag, note, tagged_at) of one image."""
    from embedscope.store.sql import run_sql

    return run_sql(db, f"SELECT tag, note, tagged_at FROM image_tags WHERE sha256 = {literal(sha)} ORDER BY tag",
                   limit=None).to_pylist()
