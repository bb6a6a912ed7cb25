"""The checked drops (``drops`` table, written by the arrival check): the latest one, one by id,
and the verdict totals ``stats`` prints. See docs/verdicts.md."""

from __future__ import annotations

import json
from typing import Any

from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, isin


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


def drops_page(db: Database, *, older_than: str | None = None, limit: int = 20) -> tuple[list[dict[str, Any]], bool]:
    """Up to ``limit`` drops, newest first, starting after the drop ``older_than`` (a cursor
    keyed by drop id, so drops a running ``watch`` adds meanwhile do not shift the pages), and
    whether older ones remain. An unknown cursor raises :class:`NotFoundError`."""
    drops = list_drops(db)
    start = 0
    if older_than:
        ids = [d["drop_id"] for d in drops]
        if older_than not in ids:
            raise NotFoundError(f"no drop {older_than!r} in {db.uri}")
        start = ids.index(older_than) + 1
    return drops[start:start + limit], start + limit < len(drops)


def verdict_gallery(db: Database, drop_id: str, verdict: str, *, page: int = 0,
                    per_page: int = 60) -> tuple[list[dict[str, Any]], int]:
    """One page of a drop's paths with ``verdict`` (by path), and how many there are in all.
    Each row is its ``arrivals`` row plus ``rule`` (the matching ``pairs`` row's, for a
    duplicate) and ``also`` (the path's other verdicts in the drop)."""
    where = both(eq("drop_id", drop_id), eq("verdict", verdict))
    chosen = sorted(db.read(S.ARRIVALS, where=where).to_pylist(), key=lambda r: r["path"])
    shown = chosen[page * per_page:(page + 1) * per_page]
    others: dict[str, list[str]] = {}
    if shown:
        rest = db.read(S.ARRIVALS, ["path", "verdict"],
                       where=both(eq("drop_id", drop_id), isin("path", [r["path"] for r in shown])))
        for path, v in zip(rest.column("path").to_pylist(), rest.column("verdict").to_pylist()):
            others.setdefault(path, []).append(v)
    rules: dict[tuple[str, str], str] = {}
    if shown and any(r["partner_sha256"] for r in shown):
        pairs = db.read(S.PAIRS, ["path_a", "sha_b", "rule"],
                        where=both(eq("run_id", drop_id), isin("path_a", [r["path"] for r in shown]))).to_pylist()
        rules = {(p["path_a"], p["sha_b"]): p["rule"] for p in pairs}
    for r in shown:
        r["rule"] = rules.get((r["path"], r["partner_sha256"] or ""))
        r["also"] = sorted(v for v in others.get(r["path"], []) if v != verdict)
    return shown, len(chosen)
