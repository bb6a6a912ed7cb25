"""The map's server-side state, one per app: the index cache (:mod:`map_index`) and the recent
lasso selections too large to send to the browser. Kept on the Flask app's config, so any
callback (the map's, the curation panel's) reaches it through :func:`current`.

A selection of up to ``INLINE_MAX`` images travels in the session's ``SELECTION`` store as
today (``{"source": "map", "sha256": [...]}``); a larger one is kept here and the store holds
``{"source": "map", "sha256": [], "count": n, "ref": "<id>"}``: :func:`selected_shas` resolves
either form.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from typing import Any, Sequence

from embedscope.dashboard.map_index import MapIndexCache

STATE_KEY = "EMBEDSCOPE_MAP_STATE"
INLINE_MAX = 10_000  # selections up to this size travel to the browser as sha256 lists
KEEP_SELECTIONS = 16  # large selections remembered per server (the most recent)
KEEP_THUMBNAILS = 4_000  # thumbnails read ahead for the pictures on the map (~10 KB each)


class MapState:
    """The map's per-app state (index cache and large selections)."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self.indexes = MapIndexCache(max_bytes) if max_bytes else MapIndexCache()
        self._selections: OrderedDict[str, list[str]] = OrderedDict()
        self._thumbs: OrderedDict[str, bytes | None] = OrderedDict()
        self._lock = threading.Lock()

    def read_ahead(self, db: Any, shas: Sequence[str]) -> None:
        """Read the thumbnails of ``shas`` in one query (the pictures a map draws), so their
        ``/map-thumb`` requests do not each scan the images table."""
        from embedscope.store.map_columns import thumbnails

        with self._lock:
            missing = [s for s in dict.fromkeys(shas) if s not in self._thumbs]
        if not missing:
            return
        found = thumbnails(db, missing)
        with self._lock:
            self._thumbs.update(found)
            while len(self._thumbs) > KEEP_THUMBNAILS:
                self._thumbs.popitem(last=False)

    def thumbnail(self, sha: str) -> tuple[bool, bytes | None]:
        """(known, bytes) of a thumbnail read ahead."""
        with self._lock:
            if sha in self._thumbs:
                return True, self._thumbs[sha]
        return False, None

    def selection_store(self, shas: Sequence[str], source: str = "map") -> dict[str, Any] | None:
        """What the session's ``SELECTION`` store keeps for a selection of ``shas``."""
        if not shas:
            return None
        if len(shas) <= INLINE_MAX:
            return {"source": source, "sha256": list(shas)}
        ref = uuid.uuid4().hex
        with self._lock:
            self._selections[ref] = list(shas)
            while len(self._selections) > KEEP_SELECTIONS:
                self._selections.popitem(last=False)
        return {"source": source, "sha256": [], "count": len(shas), "ref": ref}

    def resolve(self, stored: dict | None) -> list[str]:
        stored = stored or {}
        if stored.get("ref"):
            with self._lock:
                shas = self._selections.get(stored["ref"])
            if shas is None:
                from embedscope.errors import NotFoundError

                raise NotFoundError("that selection is no longer held by the server (it keeps the latest "
                                    f"{KEEP_SELECTIONS} large ones)", "lasso the points again")
            return shas
        return list(stored.get("sha256") or [])


def install(server: Any) -> MapState:
    """Give the Flask ``server`` its map state (done once by ``create_app``)."""
    state = MapState()
    server.config[STATE_KEY] = state
    return state


def current() -> MapState:
    """The map state of the app serving the current request."""
    from flask import current_app

    return current_app.config[STATE_KEY]


def selected_shas(stored: dict | None) -> list[str]:
    """Every sha256 of the session's selection store, inline or held by the server."""
    stored = stored or {}
    if not stored.get("ref"):
        return list(stored.get("sha256") or [])
    return current().resolve(stored)


def selection_size(stored: dict | None) -> int:
    stored = stored or {}
    return int(stored.get("count") or len(stored.get("sha256") or []))
