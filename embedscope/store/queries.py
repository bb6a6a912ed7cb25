"""Read-side helpers: counts and lookups used by the CLI, analysis and dashboard.

``run_sql`` (read-only SQL through DuckDB, :mod:`embedscope.store.sql`) and ``similar`` /
``similar_many`` (nearest neighbours, :mod:`embedscope.store.search`) are the query entry points; they
live in their own modules and are re-exported here so callers import one place.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.drops import verdict_totals

if TYPE_CHECKING:
    import pyarrow as pa


def stats(db: Database) -> dict[str, Any]:
    """Row counts: images, sources, quarantined, and embeddings per ``model/variant``."""
    return {
        "images": db.count(S.IMAGES),
        "sources": db.count(S.SOURCES),
        "quarantined": db.count(S.QUARANTINE),
        "embeddings": db.embedding_counts(),
        "masks": db.count(S.MASKS),
        "runs": db.count(S.RUNS),
        "drops": db.count(S.DROPS),
        "verdicts": verdict_totals(db),  # paths per arrival verdict, over every drop checked
    }


def run_sql(db: Database, sql: str, *, limit: int | None = 10_000, limits: Any = None,
            functions: Any = None) -> "pa.Table":
    """One read-only ``SELECT`` over the tables (see :mod:`embedscope.store.sql`), within
    ``limits`` (a :class:`~embedscope.store.sql.SqlLimits`; default: the CLI's); ``functions``:
    Python functions a query may call (:func:`embedscope.store.sql.connect`)."""
    from embedscope.store.sql import CLI_LIMITS
    from embedscope.store.sql import run_sql as _run_sql

    return _run_sql(db, sql, limit=limit, limits=limits or CLI_LIMITS, functions=functions)


def __getattr__(name: str) -> Any:
    """``similar`` and ``similar_many`` from :mod:`embedscope.store.search`, imported on first use
    (it pulls in the search cache, which importing this module should not)."""
    if name in ("similar", "similar_many"):
        from embedscope.store import search

        return getattr(search, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
