"""Slow-to-read page inputs, kept per database state: the projection and colour choices of a
run and the Map page's filter sidebar read whole columns of the projections, clusters and
images tables, and the shell's random-weights banner the embeddings' weights column (seconds
at a million rows), yet they change only when a table does. Keyed by every table's version, so
a new analysis, ingest or tag shows on the next visit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable

KEEP = 8  # (database, run, table versions) states remembered per server


class PageCache:
    """Memoised page inputs: ``get(db, key, build)`` calls ``build()`` once per database state."""

    def __init__(self) -> None:
        self._items: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, db: Any, key: tuple, build: Callable[[], Any]) -> Any:
        full = (db.uri, *key, state(db))
        with self._lock:
            if full in self._items:
                self._items.move_to_end(full)
                return self._items[full]
        value = build()
        with self._lock:
            self._items[full] = value
            while len(self._items) > KEEP:
                self._items.popitem(last=False)
        return value


def state(db: Any) -> tuple:
    """Every table's (name, version): what the page's inputs depend on."""
    return tuple((name, db.version(name)) for name in db.table_names())


_CACHE = PageCache()


def cached(db: Any, key: tuple, build: Callable[[], Any]) -> Any:
    """``build()``'s value for ``key`` in the current state of ``db`` (built once per state)."""
    return _CACHE.get(db, key, build)


def map_choices(db: Any, run: Any) -> tuple[list[dict], str | None, list[dict], str | None]:
    """(projection options, default, colour options, default) of ``run``'s map."""
    from embedscope.dashboard import shaping
    from embedscope.store import views

    return cached(db, ("choices", run.run_id), lambda: shaping.map_options(
        run, views.projection_options(db, run.run_id), views.color_options(db, run)))


def map_sidebar(db: Any, run: Any) -> Any:
    """The Map page's filter sidebar for ``run`` (with its "select matching" button)."""
    from embedscope.dashboard import sidebar

    return cached(db, ("sidebar", run.run_id), lambda: sidebar.sidebar(db, run, with_apply=True))
