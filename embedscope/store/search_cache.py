"""What a serving process keeps between searches, so a query costs only the search itself.

A :class:`SearchIndexCache` is an explicit object: the API handle and the dashboard app each
own one and pass it to :func:`embedscope.store.search.similar` / ``similar_many``; the CLI
makes one per call. It holds, per database:

- the in-memory graph index of each ``(model, variant)`` (:mod:`embedscope.store.graph_index`),
  loaded from its file or built on first use, topped up when the table grows (and saved
  again when rebuilt or grown by :data:`RESAVE_FRACTION` since its last save);
- the ``images`` table as a sha256 → (path, label) map, rebuilt when that table's version moves;
- the model names with embeddings and the Lance index's search settings, per table version.

Table versions are re-read at most every ``recheck_s`` seconds (0: before every search), so a
search sees what was committed up to ``recheck_s`` ago without paying a version check per
query.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq
from embedscope.store.graph_index import GraphIndex, GraphParams, graph_folder, open_graph, save_quietly
from embedscope.store.index import INDEX_MIN_ROWS, SearchParams

RESAVE_FRACTION = 0.10  # a serving process re-saves its graph once top-ups grew it by 10 %


@dataclass
class _ImageMap:
    version: int | None
    row_of: dict[str, int]
    paths: list[Any]
    labels: list[Any]


@dataclass
class SearchIndexCache:
    """Per-process search state; see the module docstring.

    ``min_rows``: below it (rows of one variant) no graph is kept and searches use Lance's exact
    scan, which is already fast there. ``graph=False`` keeps everything but the graphs (searches
    then go through Lance's ANN index). ``build=False`` uses a graph only when one is saved
    (``embedscope index`` saves them): a one-shot process such as the CLI should not spend
    minutes building one for a single query.
    """

    min_rows: int = INDEX_MIN_ROWS
    recheck_s: float = 1.0
    graph: bool = True
    build: bool = True
    params: GraphParams = field(default_factory=GraphParams)
    _versions: dict[tuple[str, str], tuple[float, int | None]] = field(default_factory=dict, repr=False)
    _graphs: dict[tuple[str, str, str], GraphIndex | None] = field(default_factory=dict, repr=False)
    _graph_at: dict[tuple[str, str, str], int | None] = field(default_factory=dict, repr=False)
    _images: dict[str, _ImageMap] = field(default_factory=dict, repr=False)
    _models: dict[str, tuple[float, tuple[str, ...], list[str]]] = field(default_factory=dict, repr=False)
    _search_params: dict[tuple[str, str, int | None], SearchParams | None] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one build at a time

    def version(self, db: Database, table: str) -> int | None:
        """``table``'s latest version, re-read at most every ``recheck_s`` seconds."""
        key = (db.uri, table)
        now = time.monotonic()
        seen = self._versions.get(key)
        if seen is None or now - seen[0] >= self.recheck_s:
            seen = (now, db.version(table))
            self._versions[key] = seen
        return seen[1]

    def graph_for(self, db: Database, model: str, variant: str) -> GraphIndex | None:
        """The current graph of ``(model, variant)``, or None when it has fewer than ``min_rows`` rows."""
        if not self.graph:
            return None
        with self._lock:
            return self._graph_for(db, model, variant)

    def _graph_for(self, db: Database, model: str, variant: str) -> GraphIndex | None:
        table = S.embeddings_table_name(model)
        key = (db.uri, model, variant)
        version = self.version(db, table)
        if key in self._graph_at and self._graph_at[key] == version:
            return self._graphs[key]
        graph = self._graphs.get(key)
        if graph is not None:
            graph.sync(db)
            folder = graph_folder(db)
            if folder is not None and len(graph) - graph.saved_rows >= RESAVE_FRACTION * max(graph.saved_rows, 1):
                save_quietly(graph, folder)  # not after every top-up: a later load tops up the rest itself
        elif version is not None and db.count(table, where=eq("variant", variant)) >= self.min_rows:
            graph, _ = open_graph(db, model, variant, self.params, build=self.build)
        self._graphs[key], self._graph_at[key] = graph, version
        return graph

    def image_info(self, db: Database, shas: list[str]) -> dict[str, tuple[Any, Any]]:
        """``{sha256: (path, label)}`` from the ``images`` table, through an in-memory map."""
        version = self.version(db, S.IMAGES)
        cached = self._images.get(db.uri)
        if cached is None or cached.version != version:
            rows = db.read(S.IMAGES, ["sha256", "path", "label"])
            cached = _ImageMap(version, {s: i for i, s in enumerate(rows.column("sha256").to_pylist())},
                               rows.column("path").to_pylist(), rows.column("label").to_pylist())
            self._images[db.uri] = cached
        out = {}
        for s in shas:
            i = cached.row_of.get(s)
            if i is not None:
                out[s] = (cached.paths[i], cached.labels[i])
        return out

    def stored_models(self, db: Database) -> list[str]:
        """:func:`stored_models`, re-read at most every ``recheck_s`` seconds (listing the tables
        is a round trip through LanceDB's event loop) and only when the set of tables changed
        (a table holds one model for life)."""
        now = time.monotonic()
        seen = self._models.get(db.uri)
        if seen is not None and now - seen[0] < self.recheck_s:
            return seen[2]
        names = tuple(db.embedding_table_names())
        models = seen[2] if seen is not None and seen[1] == names else stored_models(db)
        if len(models) < len(names):
            names = ()  # an empty table: read the models again next time
        self._models[db.uri] = (now, names, models)
        return models

    def search_params(self, db: Database, table: str) -> SearchParams | None:
        """The Lance index's search settings for ``table``, per table version."""
        from embedscope.store.index import search_params_for

        key = (db.uri, table, self.version(db, table))
        if key not in self._search_params:
            self._search_params[key] = search_params_for(db, table)
        return self._search_params[key]


def stored_models(db: Database) -> list[str]:
    """Model names with embeddings, from one row per ``embeddings_<model>`` table (a table holds
    one model by construction), so it costs no scan of large tables."""
    models = []
    for name in db.embedding_table_names():
        rows = db.dataset(name).to_table(columns=["model"], limit=1)
        if rows.num_rows:
            models.append(rows.column("model")[0].as_py())
    return sorted(models)
