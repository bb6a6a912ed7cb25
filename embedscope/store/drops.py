"""The checked drops (``drops`` table, written by the arrival check): the latest one, one by id,
and the verdict totals ``stats`` prints. See docs/verdicts.md."""

from __future__ import annotations

import json
from typing import Any

from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq


def list_drops(db: Database) -> list[dict[str, Any]]:
    """Every drop row, newest first, with ``counts`` and ``params`` parsed from JSON."""
    rows = db.read(S.DROPS).to_pylist()
    for r in rows:
        r["counts"] = json.loads(r["counts"] or "{}")
        r["params"] = json.loads(r["params"] or "{}")
        r["sources"] = json.loads(r["sources"] or "[]")
    return sorted(rows, key=lambda r: (r["started_at"], r["drop_id"]), reverse=True)


def drop_or_latest(db: Database, drop_id: str | None) -> dict[str, Any]:
    """The drop ``drop_id`` (``None`` or ``latest``: the newest); an unknown id raises
    :class:`NotFoundError` naming the known ones."""
    drops = list_drops(db)
    if not drops:
        raise NotFoundError(f"no checked drops in {db.uri}", "ingest a drop (verdicts are on by default) "
                            "or run `embedscope verdicts`")
    if drop_id in (None, "latest"):
        return drops[0]
    for d in drops:
        if d["drop_id"] == drop_id:
            return d
    known = ", ".join(d["drop_id"] for d in drops[:10])
    raise NotFoundError(f"no drop {drop_id!r} in {db.uri}", f"known drops (newest first): {known}")


def drop_arrivals(db: Database, drop_id: str) -> list[dict[str, Any]]:
    """The ``arrivals`` rows of one drop, by path."""
    return sorted(db.read(S.ARRIVALS, where=eq("drop_id", drop_id)).to_pylist(), key=lambda r: (r["path"], r["verdict"]))


def verdict_totals(db: Database) -> dict[str, int]:
    """Paths per verdict over every drop checked (``stats``)."""
    if not db.has_table(S.ARRIVALS):
        return {}
    t = db.read(S.ARRIVALS, ["verdict"])
    grouped = t.group_by("verdict").aggregate([([], "count_all")]).to_pylist()
    return dict(sorted((r["verdict"], int(r["count_all"])) for r in grouped))
