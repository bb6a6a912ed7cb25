"""Benchmark rows that print themselves as they are recorded, so a long run shows progress."""

from __future__ import annotations

import sys
from typing import Any, Iterable


def show(row: dict[str, Any]) -> None:
    """One line on stderr for ``row`` (``name  value unit``), flushed at once."""
    value = row.get("value")
    shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
    print(f"   {row.get('name', '?')}: {shown} {row.get('unit', '')}".rstrip(), file=sys.stderr, flush=True)


class Rows(list):
    """A list of benchmark rows that shows each row (:func:`show`) when it is added."""

    def append(self, row: dict[str, Any]) -> None:  # type: ignore[override]
        show(row)
        super().append(row)

    def extend(self, rows: Iterable[dict[str, Any]]) -> None:  # type: ignore[override]
        for row in rows:
            self.append(row)

    def __iadd__(self, rows: Iterable[dict[str, Any]]) -> "Rows":  # type: ignore[override]
        self.extend(rows)
        return self
