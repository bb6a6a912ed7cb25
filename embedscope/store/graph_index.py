"""An in-memory HNSW graph over one (model, variant) of an embeddings table, for interactive search.

Lance's IVF index (:mod:`embedscope.store.index`) is the durable path; this graph answers a
query in well under a millisecond from memory (hnswlib, chosen over faiss by measurement,
see docs/benchmarks.md). Labels are positions in :attr:`GraphIndex.keys` (sha256) and
:attr:`GraphIndex.rowids` (Lance ``_rowid``), which say exactly which rows the graph holds.

Keeping it current (:meth:`GraphIndex.sync`), by the Lance table version it covers:

- same version: nothing to do;
- the table only gained rows (every row id the graph holds still exists): the new rows are
  added to the graph ("topped up"); when the fragments of the version it covers are all still
  there unchanged, only the new fragments are read, so a top-up does not scan the table;
- a row the graph holds is gone (deleted, updated by an upsert, or moved by compaction,
  which all change row ids): the graph is rebuilt from the table.

Local databases persist the graph beside the tables, in ``<db>/_graph/<table>__<variant>.*``
(the hnswlib file, the keys as Arrow IPC, and a JSON note of the table version it covers,
written last so a half-written set is never taken as current). Object-store databases keep
it in memory only: the files would have to be downloaded whole on each start anyway.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from embedscope.store import schema as S
from embedscope.store.db import Database, is_remote
from embedscope.store.filters import eq
from embedscope.store.graph_recall import SAMPLE_QUERIES, choose_ef, describe, needs_redraw
from embedscope.store.vectors import vectors_to_numpy

log = logging.getLogger(__name__)

GRAPH_FOLDER = "_graph"
FORMAT = 1
VECTOR_COLUMN = "vector"
_BATCH_ROWS = 50_000


@dataclass(frozen=True)
class GraphParams:
    """How the graph is built and searched (measured at 300k and 1M × 384, docs/benchmarks.md).
    ``ef_search`` is the floor: each graph raises it until its measured recall@10 reaches
    ``target_recall`` (:mod:`embedscope.store.graph_recall`)."""

    m: int = 16
    ef_construction: int = 100
    ef_search: int = 100
    target_recall: float = 0.95


class GraphIndex:
    """The HNSW graph of one ``(model, variant)`` and the rows it holds; see the module docstring."""

    def __init__(self, model: str, variant: str, dim: int, params: GraphParams = GraphParams(), *,
                 empty: bool = True) -> None:
        """An empty graph (``empty=False``: hnswlib's index left uninitialised, for :meth:`load`)."""
        import hnswlib

        self.model, self.variant, self.dim, self.params = model, variant, dim, params
        self.table = S.embeddings_table_name(model)
        self.table_version: int | None = None
        self.keys = np.empty(0, "S64")  # sha256 per label, as bytes: compact and a cheap take
        self.rowids = np.empty(0, np.uint64)
        self.saved_rows = 0  # rows in the file this graph was loaded from or last saved to
        self.calibration: dict[str, Any] | None = None  # the ef chosen by measured recall (graph_recall)
        self._lock = threading.Lock()  # a top-up (which may resize the graph) never overlaps a search
        self.index = hnswlib.Index(space="cosine", dim=dim)
        if empty:
            self.index.init_index(max_elements=1024, M=params.m, ef_construction=params.ef_construction)
            self.index.set_ef(params.ef_search)

    def __len__(self) -> int:
        return len(self.rowids)

    @property
    def ef(self) -> int:
        """The search ``ef``: the one chosen by measured recall, else the floor."""
        return int(self.calibration["ef"]) if self.calibration else self.params.ef_search

    def calibrate(self, held_out: np.ndarray | None = None) -> dict[str, Any]:
        """Choose :attr:`ef` by the recall it gives to ``held_out`` vectors the graph does not
        hold (else to a sample of the rows it holds; see :mod:`embedscope.store.graph_recall`);
        the caller holds the lock or owns the graph."""
        self.calibration = choose_ef(self.index, len(self), self.params.ef_search, self.params.target_recall,
                                     held_out)
        self.index.set_ef(self.ef)
        log.info("graph index of %s/%s: %s (%.1fs)", self.model, self.variant, describe(self.calibration),
                 self.calibration["seconds"])
        return self.calibration

    # -- building and keeping current -------------------------------------------------------

    @classmethod
    def build(cls, db: Database, model: str, variant: str, params: GraphParams = GraphParams()) -> "GraphIndex":
        """A graph of every ``variant`` row of ``embeddings_<model>`` at its latest version."""
        t0 = time.monotonic()
        table = S.embeddings_table_name(model)
        ds = db.dataset(table)
        dim = int(ds.schema.field(VECTOR_COLUMN).type.list_size)
        graph = cls(model, variant, dim, params)
        graph.table_version = int(ds.version)
        graph._add_calibrating(ds.to_batches(columns=["sha256", VECTOR_COLUMN], filter=eq("variant", variant),
                                             with_row_id=True, batch_size=_BATCH_ROWS))
        log.info("built the graph index of %s/%s: %d rows in %.1fs", model, variant, len(graph), time.monotonic() - t0)
        return graph

    def sync(self, db: Database) -> str:
        """Bring the graph to the table's latest version: ``"current"``, ``"topped-up"`` or
        ``"rebuilt"`` (see the module docstring)."""
        with self._lock:
            return self._sync(db)

    def _sync(self, db: Database) -> str:
        ds = db.dataset(self.table)
        if int(ds.version) == self.table_version:
            return "current"
        new_ids = self._appended_rowids(ds)
        if new_ids is None:
            now = ds.to_table(columns=[], filter=eq("variant", self.variant), with_row_id=True)
            now_ids = now.column("_rowid").to_numpy().astype(np.uint64)
            if not np.isin(self.rowids, now_ids, assume_unique=True).all():
                fresh = GraphIndex.build(db, self.model, self.variant, self.params)
                self.__dict__.update({k: v for k, v in fresh.__dict__.items() if k != "_lock"})
                return "rebuilt"
            new_ids = np.setdiff1d(now_ids, self.rowids, assume_unique=True)
        parts = (ds._take_rows(new_ids[start:start + _BATCH_ROWS].tolist(), columns=["sha256", VECTOR_COLUMN])
                 .append_column("_rowid", pa.array(new_ids[start:start + _BATCH_ROWS], pa.uint64()))
                 for start in range(0, len(new_ids), _BATCH_ROWS))
        if needs_redraw(self.calibration, len(self) + len(new_ids)):
            self._add_calibrating(parts)
        else:
            self._add(parts)
        self.table_version = int(ds.version)
        log.info("topped up the graph index of %s/%s with %d rows", self.model, self.variant, len(new_ids))
        return "topped-up"

    def _appended_rowids(self, ds: Any) -> np.ndarray | None:
        """The row ids of the rows added since :attr:`table_version`, read from the new fragments
        alone, when the table only gained rows since (every fragment of that version is still
        there with the same rows deleted); None when that cannot be told, e.g. the version was
        cleaned up (then every row id of the table is compared)."""
        try:
            before = {f.fragment_id: _fragment_state(f) for f in ds.checkout_version(self.table_version).get_fragments()}
        except (ValueError, OSError, RuntimeError):
            return None
        now = ds.get_fragments()
        if any(_fragment_state(f) != before[f.fragment_id] for f in now if f.fragment_id in before) or \
                len(before.keys() & {f.fragment_id for f in now}) != len(before):
            return None
        fresh = [f for f in now if f.fragment_id not in before]
        if not fresh:
            return np.empty(0, np.uint64)
        table = ds.scanner(columns=[], filter=eq("variant", self.variant), with_row_id=True, fragments=fresh).to_table()
        return np.sort(table.column("_rowid").to_numpy().astype(np.uint64))

    def _add_calibrating(self, batches: Any) -> None:
        """:meth:`_add`, and :meth:`calibrate` with the last rows read as held-out queries: they
        are searched (against every row added before them) before they are added."""
        last = None
        for batch in batches:
            if last is not None:
                self._add([last])
            last = batch
        if last is None or last.num_rows == 0:
            self.calibrate()
            return
        held = last.slice(max(0, last.num_rows - SAMPLE_QUERIES))
        self._add([last.slice(0, last.num_rows - held.num_rows)])
        self.calibrate(vectors_to_numpy(held.column(VECTOR_COLUMN)))
        self._add([held])

    def _add(self, batches: Any) -> None:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            vectors = vectors_to_numpy(batch.column(VECTOR_COLUMN))
            start = len(self.rowids)
            needed = start + len(vectors)
            if needed > self.index.get_max_elements():
                self.index.resize_index(max(needed, 2 * self.index.get_max_elements()))
            self.index.add_items(vectors, np.arange(start, needed))
            self.keys = np.concatenate([self.keys, _as_bytes(batch.column("sha256"))])
            self.rowids = np.concatenate([self.rowids, batch.column("_rowid").to_numpy().astype(np.uint64)])

    # -- searching --------------------------------------------------------------------------

    def search(self, vectors: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
        """The ``k`` nearest rows to each of ``vectors`` (m × dim): ``(sha256, 1 - cos)`` lists,
        nearest first. Fewer than ``k`` when the graph holds fewer rows."""
        labels, distances, keys = self.search_labels(vectors, k)
        return [list(zip([key.decode() for key in keys[row]], dist.tolist())) for row, dist in zip(labels, distances)]

    def search_labels(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`search` as arrays: labels (m × k', k' = min(k, rows)), ``1 - cos`` distances,
        and the :attr:`keys` those labels index (taken with them, so a top-up cannot shift them)."""
        k = min(k, len(self))
        vectors = np.atleast_2d(vectors)
        if k == 0:
            return np.empty((len(vectors), 0), np.uint64), np.empty((len(vectors), 0), np.float32), self.keys
        ef = max(self.ef, k)
        with self._lock:
            if self.index.ef != ef:
                self.index.set_ef(ef)
            labels, distances = self.index.knn_query(vectors.astype(np.float32, copy=False), k=k)
            keys = self.keys
        return labels, distances, keys

    def vector(self, label: int) -> np.ndarray:
        """The stored vector of ``label``, normalised to length 1 (hnswlib keeps cosine vectors so)."""
        with self._lock:
            return np.asarray(self.index.get_items([label])[0], dtype=np.float32)

    def bytes_per_vector(self) -> float:
        """Memory per row: the graph (vector + links, as hnswlib lays them out) plus the keys."""
        if not len(self):
            return 0.0
        graph = self.index.index_file_size()
        return round((graph + self.keys.nbytes + self.rowids.nbytes) / len(self), 1)

    def stats(self) -> dict[str, Any]:
        return {"model": self.model, "variant": self.variant, "rows": len(self), "table_version": self.table_version,
                "bytes_per_vector": self.bytes_per_vector(), "library": "hnswlib", **asdict(self.params),
                "ef": self.ef, "calibration": self.calibration}

    # -- persistence ------------------------------------------------------------------------

    def save(self, folder: Path) -> None:
        """Write the graph, its keys and (last) its JSON note under ``folder``."""
        import pyarrow.feather as feather

        folder.mkdir(parents=True, exist_ok=True)
        stem = folder / f"{self.table}__{self.variant}"
        tmp = f".tmp-{os.getpid()}"
        self.index.save_index(str(stem) + ".hnsw" + tmp)
        keys = pa.array(self.keys, pa.binary()).cast(pa.string())
        feather.write_feather(pa.table({"sha256": keys, "rowid": pa.array(self.rowids, pa.uint64())}),
                              str(stem) + ".keys.arrow" + tmp, compression="uncompressed")
        note = {"format": FORMAT, "table": self.table, "model": self.model, "variant": self.variant, "dim": self.dim,
                "table_version": self.table_version, "rows": len(self), "params": asdict(self.params),
                "calibration": self.calibration}
        Path(str(stem) + ".json" + tmp).write_text(json.dumps(note))
        for suffix in (".hnsw", ".keys.arrow", ".json"):
            os.replace(str(stem) + suffix + tmp, str(stem) + suffix)
        self.saved_rows = len(self)

    @classmethod
    def load(cls, folder: Path, model: str, variant: str) -> "GraphIndex | None":
        """The graph saved under ``folder``, or None if there is none or it is unreadable."""
        import pyarrow.feather as feather

        stem = folder / f"{S.embeddings_table_name(model)}__{variant}"
        if not Path(str(stem) + ".json").exists():
            return None
        try:
            note = json.loads(Path(str(stem) + ".json").read_text())
            if note.get("format") != FORMAT:
                return None
            graph = cls(model, variant, int(note["dim"]), GraphParams(**note["params"]), empty=False)
            keys = feather.read_table(str(stem) + ".keys.arrow")
            if keys.num_rows != note["rows"]:
                return None  # written by two processes at once: the pieces do not belong together
            graph.index.load_index(str(stem) + ".hnsw", max_elements=max(1024, keys.num_rows))
            if graph.index.get_current_count() != keys.num_rows:
                return None
        except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
            log.warning("ignoring the saved graph index %s: %s", stem, exc)
            return None
        graph.calibration = note.get("calibration")
        graph.index.set_ef(graph.ef)
        graph.keys = _as_bytes(keys.column("sha256"))
        graph.rowids = keys.column("rowid").to_numpy().astype(np.uint64)
        graph.table_version = int(note["table_version"])
        graph.saved_rows = len(graph)
        return graph


def _fragment_state(fragment: Any) -> tuple[int, int]:
    """A fragment's rows written and rows deleted: what a rewrite or a delete changes."""
    meta = fragment.metadata
    return int(meta.physical_rows), int(meta.deletion_file.num_deleted_rows) if meta.deletion_file else 0


def _as_bytes(column: Any) -> np.ndarray:
    return np.asarray(column.to_pylist(), dtype="S64")


def graph_folder(db: Database) -> Path | None:
    """Where ``db``'s graphs are saved; None for an object-store database (kept in memory only)."""
    return None if is_remote(db.uri) else Path(db.uri) / GRAPH_FOLDER


def open_graph(db: Database, model: str, variant: str, params: GraphParams = GraphParams(), *,
               build: bool = True) -> tuple[GraphIndex | None, str]:
    """The current graph of ``(model, variant)``: loaded from disk and synced, or built (unless
    not ``build``: then None when none is saved); saved again when it changed. Returns it and
    what was done (``"loaded"``, ``"topped-up"``, ``"rebuilt"``, ``"built"`` or ``"none"``)."""
    folder = graph_folder(db)
    graph = GraphIndex.load(folder, model, variant) if folder else None
    if graph is None and not build:
        return None, "none"
    if graph is None:
        graph, action = GraphIndex.build(db, model, variant, params), "built"
    else:
        action = graph.sync(db)
        action = "loaded" if action == "current" else action
        if graph.calibration is None:  # saved before graphs measured their recall
            with graph._lock:
                graph.calibrate()
            action = "calibrated" if action == "loaded" else action
    if folder and action != "loaded":
        save_quietly(graph, folder)
    return graph, action


def save_quietly(graph: GraphIndex, folder: Path) -> None:
    """:meth:`GraphIndex.save`, only warning when it cannot (a read-only database folder: the
    graph still serves from memory)."""
    try:
        graph.save(folder)
    except OSError as exc:
        log.warning("could not save the graph index under %s: %s", folder, exc)


def build_graphs(db: Database, model: str, *, min_rows: int, params: GraphParams = GraphParams()) -> list[dict[str, Any]]:
    """Bring every variant's saved graph of ``embeddings_<model>`` up to date (``embedscope index``);
    variants with fewer than ``min_rows`` rows are skipped. One stats dict per variant."""
    table = S.embeddings_table_name(model)
    variants = db.read(table, ["variant"]).column("variant")
    counts = {v["values"]: v["counts"] for v in pa.compute.value_counts(variants).to_pylist()}
    out = []
    for variant, rows in sorted(counts.items()):
        if rows < min_rows:
            out.append({"variant": variant, "rows": rows, "action": "skipped"})
            continue
        t0 = time.monotonic()
        graph, action = open_graph(db, model, variant, params)
        out.append({**graph.stats(), "action": action, "seconds": round(time.monotonic() - t0, 3)})
    return out


def drop_graphs(db: Database, model: str) -> int:
    """Delete the saved graphs of ``embeddings_<model>``; returns how many files went."""
    folder = graph_folder(db)
    if folder is None or not folder.is_dir():
        return 0
    gone = 0
    for path in folder.glob(f"{S.embeddings_table_name(model)}__*"):
        path.unlink(missing_ok=True)
        gone += 1
    return gone
