"""Per-app settings and the read-only database handle the pages and callbacks use."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedscope.dashboard.encoders import EncoderCache
    from embedscope.store.search_cache import SearchIndexCache
    from embedscope.store.sql import SqlLimits

# the map draws points (WebGL) up to this many in view, a server-rendered density image beyond
# (measured in benchmarks/bench_map.py: 100k WebGL points took 6.7 s to draw and 28 s to lasso in
# headless Chromium); a 3-D map shows a fixed random sample of this many
DEFAULT_MAX_POINTS = 50_000
DEFAULT_MAX_ORIGINAL_BYTES = 64 * 1024 * 1024  # /image serves originals up to this size, else the thumbnail
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # the Search page decodes uploads up to this many pixels
DEFAULT_MAX_BODY_BYTES = 40 * 1024 * 1024  # request bodies (a 25 MiB upload is ~34 MB of base64 JSON)
CONFIG_KEY = "EMBEDSCOPE_DASHBOARD"


@dataclass
class DashboardContext:
    """What a dashboard instance serves: one database, read-only, plus display limits."""

    db_path: str
    max_points: int = DEFAULT_MAX_POINTS
    neighbours_k: int = 8
    storage_options: dict[str, str] = field(default_factory=dict, repr=False)  # object stores
    sql_limits: SqlLimits | None = None  # the SQL page's limits (None: store.sql.DASHBOARD_LIMITS)
    max_original_bytes: int = DEFAULT_MAX_ORIGINAL_BYTES
    max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS
    # the app's one encoder cache (search by upload, within-image patches): built in create_app
    encoders: EncoderCache | None = field(default=None, repr=False)
    # the app's search state (saved graph indexes, image map), kept between neighbour lookups
    search: SearchIndexCache | None = field(default=None, repr=False)
    # curation: the dashboard writes (only the tags log) when bound to loopback or behind auth
    writes_allowed: bool = False
    # the app's text-vector cache (SQL's text_vector / similar_to_text), made on first use
    _text_vectors: Any = field(default=None, repr=False)
    _cache: dict[tuple, Any] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def db(self) -> Any:
        """A fresh read handle (cheap); it sees the latest committed versions."""
        from embedscope.store.db import Database

        return Database(self.db_path, storage_options=self.storage_options)

    def tag(self, shas: list[str], tag: str, *, note: str | None = None, remove: bool = False,
            source: str = "dashboard") -> int:
        """Tag (or untag) images from the dashboard: the only write it makes, refused with one
        line unless the server is bound to a loopback address or requires auth."""
        from embedscope.errors import ConfigError
        from embedscope.store.tags import tag_images

        if not self.writes_allowed:
            raise ConfigError("this dashboard is read-only: it is served off-loopback without auth",
                              "serve it on 127.0.0.1 or with --auth-file to tag images")
        return tag_images(self.db(), shas, tag, note=note, remove=remove, source=source, wait_lock=10.0)

    def text_vectors(self) -> Any:
        """The server's :class:`~embedscope.ingest.embed_text.TextVectors` (one per app)."""
        from embedscope.ingest.embed_text import TextVectors

        with self._lock:
            if self._text_vectors is None:
                flags = self.encoders.flags if self.encoders is not None else {}
                self._text_vectors = TextVectors(weights=flags.get("weights"), device=flags.get("device") or "auto")
            return self._text_vectors

    def map_points(self, run_id: str, method: str, dims: int) -> Any:
        """The map's coordinates for one projection, cached per projections-table version so
        that hover/click/selection events (which carry only point indices) resolve quickly."""
        from embedscope.store import schema as S
        from embedscope.store.views import map_coordinates

        db = self.db()
        key = (run_id, method, int(dims), db.version(S.PROJECTIONS), self.max_points)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None:
            return hit
        points = map_coordinates(db, run_id, method, int(dims), max_points=self.max_points)
        with self._lock:
            if len(self._cache) >= 8:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = points
        return points


def current() -> DashboardContext:
    """The context of the app serving the current request (layouts are built per request)."""
    from flask import current_app

    return current_app.config[CONFIG_KEY]
