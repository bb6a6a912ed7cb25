"""SQL literals and filters: the one place values are quoted into SQL text.

Lance ``where=`` filters and DuckDB view definitions are SQL strings; every value that goes
into one passes through :func:`literal` (identifiers through :func:`ident`), and the usual
shapes of filter are built by :func:`eq`, :func:`isin`, :func:`both` and :func:`either`.

>>> eq("run_id", "it's")
"run_id = 'it''s'"
>>> both(eq("kind", "analyze"), None, isin("sha256", ["a", "b"]))
"(kind = 'analyze') AND (sha256 IN ('a', 'b'))"
"""

from __future__ import annotations

from typing import Any, Iterable


def literal(value: Any) -> str:
    """``value`` as a SQL literal: NULL, TRUE/FALSE, a number, or a quoted string."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return repr(float(value))
    return "'" + str(value).replace("'", "''") + "'"


def ident(name: str) -> str:
    """``name`` as a double-quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def eq(column: str, value: Any) -> str:
    """``column = value`` (``column IS NULL`` for None)."""
    return f"{column} IS NULL" if value is None else f"{column} = {literal(value)}"


def isin(column: str, values: Iterable[Any]) -> str:
    """``column IN (...)``; an empty set matches nothing."""
    items = [literal(v) for v in values]
    return f"{column} IN ({', '.join(items)})" if items else "FALSE"


def either(*clauses: str | None) -> str:
    """The OR of the clauses that are not None; ``FALSE`` when there are none."""
    kept = [c for c in clauses if c]
    if not kept:
        return "FALSE"
    return kept[0] if len(kept) == 1 else " OR ".join(f"({c})" for c in kept)


def both(*clauses: str | None) -> str | None:
    """The AND of the clauses that are not None; None when there are none."""
    kept = [c for c in clauses if c]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else " AND ".join(f"({c})" for c in kept)
