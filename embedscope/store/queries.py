"""Read-side helpers: counts and lookups used by the CLI, analysis and dashboard."""

from __future__ import annotations

from typing import Any

from embedscope.store import schema as S
from embedscope.store.db import Database


def stats(db: Database) -> dict[str, Any]:
    """Row counts: images, sources, quarantined, and embeddings per ``model/variant``."""
    return {
        "images": db.count(S.IMAGES),
        "sources": db.count(S.SOURCES),
        "quarantined": db.count(S.QUARANTINE),
        "embeddings": db.embedding_counts(),
        "masks": db.count(S.MASKS),
        "runs": db.count(S.RUNS),
    }
