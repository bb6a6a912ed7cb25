"""Benchmark rows that print themselves as they are recorded, so a long run shows progress."""

from __future__ import annotations

import sys
from typing import Any, Iterable


_shown: set[int] = set()  # ids of the rows already printed (rows live until the run's table is written)


def show(row: dict[str, Any]) -> None:
    """One line on stderr for ``row`` (``name  value unit``), flushed at once."""
    _shown.add(id(row))
    value = row.get("value")
    shown = "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))
    settings = row.get("settings", {})
    line = f"   {row.get('name', '?')}: {shown} {row.get('unit', '')}".rstrip()
    if settings.get("cpu_s") is not None:
        line += f" (CPU {settings['cpu_s']} s)"
    if value is None and (settings.get("skipped") or settings.get("error")):
        line += f" ({'skipped' if settings.get('skipped') else 'error'}: {settings.get('skipped') or settings['error']})"
    print(line, file=sys.stderr, flush=True)


def was_shown(row: dict[str, Any]) -> bool:
    """Whether :func:`show` printed ``row`` already (so the runner does not print it twice)."""
    return id(row) in _shown


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
