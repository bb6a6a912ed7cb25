"""What a serving process keeps between searches, so a query costs only the search itself.

A :class:`SearchIndexCache` is an explicit object: the API handle and the dashboard app each
own one and pass it to :func:`embedscope.store.search.similar` / ``similar_many``; the CLI
makes one per call. It holds, per database:

- the in-memory graph index of each ``(model, variant)`` (:mod:`embedscope.store.graph_index`),
  loaded from its file or built on first use, topped up when the table grows (and saved
  again when rebuilt or grown by :data:`RESAVE_FRACTION` since its last save);
- the ``images`` table as a sha256 → (path, label) map, rebuilt when that table's version moves,
  and, per graph, each label's row in that map, so a graph search's result is built from numpy
  takes by label (:meth:`SearchIndexCache.graph_rows`);
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

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import eq
from embedscope.store.graph_index import GraphIndex, GraphParams, graph_folder, open_graph, save_quietly
from embedscope.store.index import INDEX_MIN_ROWS, SearchParams

RESAVE_FRACTION = 0.10  # a serving process re-saves its graph once top-ups grew it by 10 %


@dataclass
class _ImageMap:
    version: int | None
    shas: list[str]
    paths: list[Any]
    labels: list[Any]
    # paths, labels as object arrays with a trailing None (the same str objects)
    path_array: np.ndarray = field(init=False, repr=False)
    label_array: np.ndarray = field(init=False, repr=False)
    row_of: dict[str, int] = field(init=False, repr=False)  # the last row of each sha256

    def __post_init__(self) -> None:
        self.row_of = {s: i for i, s in enumerate(self.shas)}
        self.path_array = np.array([*self.paths, None], dtype=object)
        self.label_array = np.array([*self.labels, None], dtype=object)


@dataclass
class _GraphRows:
    """Where each graph label's image sits in an :class:`_ImageMap`, so a search result's paths
    and labels are numpy takes by graph label instead of a dict lookup per hit."""

    keys: np.ndarray  # the graph's keys array these rows follow (a top-up or rebuild replaces it)
    images: _ImageMap
    row: np.ndarray  # per graph label: its row in `images`, or len(images) (a None) when missing
    hex_keys: bool  # every key is 64 bytes long (a sha256 in hex)
    order: np.ndarray | None = None  # argsort of keys, for label_of
    sorted_keys: np.ndarray | None = None

    def columns(self, labels: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
        """sha256, path and label of each of ``labels``, as Arrow string arrays."""
        n = len(labels)
        picked = self.keys[labels]
        if self.hex_keys:  # 64 bytes each: the key bytes are the string array's data as they are
            shas = pa.StringArray.from_buffers(n, pa.py_buffer(_offsets64(n)), pa.py_buffer(picked))
        else:
            shas = pa.array([key.decode() for key in picked], pa.string())
        rows = self.row[labels]
        both = pa.array(np.concatenate([self.images.path_array[rows], self.images.label_array[rows]]), pa.string())
        return shas, both.slice(0, n), both.slice(n, n)

    def label_of(self, sha: str) -> int | None:
        """The graph label of ``sha`` (a binary search in the keys, sorted on first use)."""
        if self.sorted_keys is None:
            self.order = np.argsort(self.keys, kind="stable")
            self.sorted_keys = self.keys[self.order]
        key = sha.encode()
        i = int(np.searchsorted(self.sorted_keys, key))
        if i < len(self.sorted_keys) and self.sorted_keys[i] == key:
            return int(self.order[i])
        return None


def _offsets64(n: int) -> np.ndarray:
    return np.arange(0, 64 * (n + 1), 64, dtype=np.int32)


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
    _graph_rows: dict[tuple[str, str, str], _GraphRows] = field(default_factory=dict, repr=False)
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
        cached = self._image_map(db)
        out = {}
        for s in shas:
            i = cached.row_of.get(s)
            if i is not None:
                out[s] = (cached.paths[i], cached.labels[i])
        return out

    def _image_map(self, db: Database) -> _ImageMap:
        version = self.version(db, S.IMAGES)
        cached = self._images.get(db.uri)
        if cached is None or cached.version != version:
            rows = db.read(S.IMAGES, ["sha256", "path", "label"])
            cached = _ImageMap(version, rows.column("sha256").to_pylist(),
                               rows.column("path").to_pylist(), rows.column("label").to_pylist())
            self._images[db.uri] = cached
        return cached

    def graph_rows(self, db: Database, graph: GraphIndex, keys: np.ndarray) -> _GraphRows:
        """The paths and labels of ``graph``'s labels as of its ``keys`` (:attr:`GraphIndex.keys`,
        read together with the labels searched), kept until the keys or ``images`` change."""
        key = (db.uri, graph.model, graph.variant)
        images = self._image_map(db)
        cached = self._graph_rows.get(key)
        if cached is None or cached.keys is not keys or cached.images is not images:
            shas = pa.array(keys, pa.binary()).cast(pa.string())
            known = pa.array(list(images.row_of), pa.string())
            at = pc.index_in(shas, value_set=known).to_numpy(zero_copy_only=False)
            positions = np.fromiter(images.row_of.values(), np.int64, len(images.row_of))
            row = np.full(len(keys), len(images.paths), np.int64)
            found = ~np.isnan(at)
            row[found] = positions[at[found].astype(np.int64)]
            hex_keys = keys.dtype == np.dtype("S64") and bool(keys.view(np.uint8).reshape(-1, 64)[:, -1].all())
            cached = _GraphRows(keys, images, row, hex_keys)
            self._graph_rows[key] = cached
        return cached

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
