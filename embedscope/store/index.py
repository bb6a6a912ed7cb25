"""The ANN (approximate nearest neighbour) index on an embeddings table's ``vector`` column.

Policy (one place, so the CLI, the daemon and searches agree):

- below :data:`INDEX_MIN_ROWS` rows a table has no index and searches are exact (a brute
  force scan of 20k×384 floats is a few milliseconds of SIMD work);
- at or above it, ``embedscope index`` (or the daemon, through :func:`maybe_optimize`) builds
  an **IVF_PQ** index with cosine distance. Parameters come from N and dim
  (:func:`choose_params`): ``round(sqrt(N) / 4)`` IVF partitions (8…1024), ``dim / 8``
  sub-vectors of **4-bit** PQ codes. 4-bit codes train ~10× faster than 8-bit ones and are
  cruder, which the refine step makes up for;
- searches probe ``max(16, 25 %)`` of the partitions and re-rank ``50 × k`` candidates
  with exact cosine distances (:func:`search_params`). Measured recall@10 against exact
  search: 0.998 on 50k clustered random 384-d vectors
  (``tests/test_queries_ann.py``; 100k and 1M in ``benchmarks/bench_queries.py``);
- ``embedscope index --type IVF_HNSW_SQ`` builds the other kind Lance offers (one HNSW graph of
  8-bit scalar-quantized vectors per partition, one partition per 100k rows, all probed, ef 64,
  refine 5). At 30k × 384 both reach recall 1.0; IVF_HNSW_SQ searches in 0.56× the time but
  builds 11.6× slower (docs/benchmarks.md). Interactive searches use the in-memory graph
  (:mod:`embedscope.store.graph_index`), so IVF_PQ's fast (re)builds keep it the default;
- as data grows, :func:`maybe_optimize` folds new rows into the index once they are ≥ 10 %
  of the indexed rows (Lance searches un-indexed rows exactly in the meantime, so results
  stay correct, only slower), and retrains from scratch once the table has grown enough that
  :func:`choose_params` would pick twice the partitions (≈ 4× the rows at the last build).
  The daemon calls it after each ingest batch that added rows, holding the writer lock.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database

log = logging.getLogger(__name__)

INDEX_MIN_ROWS = 20_000
VECTOR_COLUMN = "vector"
OPTIMIZE_FRACTION = 0.10  # fold new rows into the index once they reach 10 % of the indexed ones
RETRAIN_GROWTH = 2.0  # retrain when the chosen partition count doubles (rows ×4)
INDEX_TYPES = ("IVF_PQ", "IVF_HNSW_SQ")
DEFAULT_INDEX_TYPE = "IVF_PQ"
# the index name carries its kind and the row count it was trained on, e.g. vector_ivfpq_trained_on_50000
_NAME_PREFIX = {"IVF_PQ": "vector_ivfpq_trained_on_", "IVF_HNSW_SQ": "vector_ivfhnswsq_trained_on_"}


@dataclass(frozen=True)
class IndexParams:
    """How an IVF_PQ (or IVF_HNSW_SQ: one HNSW graph of 8-bit scalar-quantized vectors per
    partition; ``num_sub_vectors``/``num_bits`` unused) index is built."""

    index_type: str
    num_partitions: int
    num_sub_vectors: int
    num_bits: int = 4
    max_iterations: int = 20
    sample_rate: int = 64
    m: int = 16
    ef_construction: int = 100


@dataclass(frozen=True)
class SearchParams:
    """How an indexed search runs: partitions probed and exact re-ranking factor."""

    nprobes: int
    refine_factor: int
    ef: int | None = None  # IVF_HNSW_SQ: candidates kept while walking each partition's graph


def choose_params(n: int, dim: int, index_type: str = DEFAULT_INDEX_TYPE) -> IndexParams:
    """Index parameters for ``n`` vectors of size ``dim`` (see the module docstring).

    IVF_HNSW_SQ gets few, large partitions (one per 100k rows): each holds a graph, and all
    of them are searched."""
    if index_type == "IVF_HNSW_SQ":
        return IndexParams("IVF_HNSW_SQ", max(1, min(64, round(n / 100_000))), 0, num_bits=8)
    partitions = max(8, min(1024, round(math.sqrt(max(n, 1)) / 4)))
    sub = dim // 8 if dim % 8 == 0 else max(d for d in range(1, dim // 4 + 1) if dim % d == 0)
    return IndexParams("IVF_PQ", partitions, sub)


def search_params(num_partitions: int, index_type: str = DEFAULT_INDEX_TYPE) -> SearchParams:
    """Search settings for an index with ``num_partitions`` partitions (recall@10 ≥ 0.95)."""
    if index_type == "IVF_HNSW_SQ":
        return SearchParams(nprobes=num_partitions, refine_factor=5, ef=64)
    return SearchParams(nprobes=min(num_partitions, max(16, math.ceil(0.25 * num_partitions))), refine_factor=50)


def search_params_for(db: Database, table: str) -> SearchParams | None:
    """Search settings for ``table``'s vector index, or None if it has none. Cheap (no index
    statistics are read when the index carries its training size in its name)."""
    tbl = db.table(table)
    for idx in tbl.list_indices():
        if VECTOR_COLUMN in list(idx.columns):
            kind, trained = _parse_name(idx.name)
            if trained is None:
                info = index_info(db, table)
                return search_params(info["num_partitions"], kind) if info else None
            dim = tbl.schema.field(VECTOR_COLUMN).type.list_size
            return search_params(choose_params(trained, dim, kind).num_partitions, kind)
    return None


def index_info(db: Database, table: str) -> dict[str, Any] | None:
    """``{"name", "type", "num_partitions", "indexed_rows", "unindexed_rows"}`` of the vector
    index on ``table``, or None if it has none."""
    if not db.has_table(table):
        return None
    tbl = db.table(table)
    tbl.checkout_latest()
    for idx in tbl.list_indices():
        if VECTOR_COLUMN in list(idx.columns):
            stats = tbl.to_lance().stats.index_stats(idx.name)
            segments = stats.get("indices") or stats.get("segments") or [{}]
            kind, trained = _parse_name(idx.name)
            dim = tbl.schema.field(VECTOR_COLUMN).type.list_size
            reported = int(segments[0].get("num_partitions") or 1)
            return {
                "name": idx.name,
                "type": stats.get("index_type", str(idx.index_type)),
                "kind": kind,
                # lance 14 reports 1 partition once optimize_indices has merged new rows, so
                # the count is re-derived from the rows the index was trained on
                "num_partitions": choose_params(trained, dim, kind).num_partitions if trained else reported,
                "trained_rows": trained,
                "indexed_rows": int(stats.get("num_indexed_rows", 0)),
                "unindexed_rows": int(stats.get("num_unindexed_rows", 0)),
            }
    return None


def build_index(db: Database, model: str, *, force: bool = False, index_type: str = DEFAULT_INDEX_TYPE) -> dict[str, Any]:
    """(Re)build the ANN index (``index_type``: one of :data:`INDEX_TYPES`) on
    ``embeddings_<model>``; the caller holds the writer lock.

    Below :data:`INDEX_MIN_ROWS` rows nothing is built unless ``force``. Returns what was done:
    ``{"table", "rows", "action": "built" | "skipped", "params", "seconds"}``.
    """
    from lancedb.index import HnswSq, IvfPq

    table = _table_for(db, model)
    tbl = db.table(table)
    tbl.checkout_latest()
    n = tbl.count_rows()
    dim = tbl.schema.field(VECTOR_COLUMN).type.list_size
    params = choose_params(n, dim, index_type)
    result: dict[str, Any] = {"table": table, "rows": n, "params": asdict(params)}
    if n < INDEX_MIN_ROWS and not force:
        return {**result, "action": "skipped", "seconds": 0.0,
                "reason": f"{n} rows < {INDEX_MIN_ROWS}: exact search is used"}
    if n < 2 * params.num_partitions:
        return {**result, "action": "skipped", "seconds": 0.0, "reason": f"{n} rows is too few to train an index"}
    t0 = time.monotonic()
    if index_type == "IVF_HNSW_SQ":
        config: Any = HnswSq(distance_type="cosine", num_partitions=params.num_partitions,
                             max_iterations=params.max_iterations, sample_rate=params.sample_rate,
                             m=params.m, ef_construction=params.ef_construction)
    else:
        config = IvfPq(distance_type="cosine", num_partitions=params.num_partitions,
                       num_sub_vectors=params.num_sub_vectors, num_bits=params.num_bits,
                       max_iterations=params.max_iterations, sample_rate=params.sample_rate)
    for idx in tbl.list_indices():  # the name changes with every training: drop the old one
        if VECTOR_COLUMN in list(idx.columns):
            tbl.drop_index(idx.name)
    tbl.create_index(VECTOR_COLUMN, config=config, replace=True, name=f"{_NAME_PREFIX[index_type]}{n}")
    seconds = time.monotonic() - t0
    log.info("built %s index on %s (%d rows) in %.1fs", params.index_type, table, n, seconds)
    return {**result, "action": "built", "seconds": round(seconds, 3)}


def maybe_optimize(db: Database, model: str) -> str:
    """Keep ``embeddings_<model>``'s index in step with its size; returns what it did.

    ``"none"`` (small table, or index up to date), ``"built"`` (crossed
    :data:`INDEX_MIN_ROWS`), ``"optimized"`` (new rows folded into the existing index) or
    ``"rebuilt"`` (grown ~4× since the last training). Cheap when nothing is due: call it
    after every ingest batch that added rows, holding the writer lock.
    """
    table = _table_for(db, model)
    info = index_info(db, table)
    if info is None:
        n = db.count(table)
        if n < INDEX_MIN_ROWS:
            return "none"
        return "built" if build_index(db, model)["action"] == "built" else "none"
    total = info["indexed_rows"] + info["unindexed_rows"]
    dim = db.table(table).schema.field(VECTOR_COLUMN).type.list_size
    trained = info["trained_rows"] or info["indexed_rows"]
    kind = info["kind"]
    if choose_params(total, dim, kind).num_partitions >= RETRAIN_GROWTH * choose_params(trained, dim, kind).num_partitions:
        build_index(db, model, force=True, index_type=kind)
        return "rebuilt"
    if info["unindexed_rows"] and info["unindexed_rows"] >= OPTIMIZE_FRACTION * max(info["indexed_rows"], 1):
        t0 = time.monotonic()
        db.dataset(table).optimize.optimize_indices()
        db.refresh()
        log.info("folded %d new rows into the index of %s in %.1fs", info["unindexed_rows"], table,
                 time.monotonic() - t0)
        return "optimized"
    return "none"


def drop_index(db: Database, model: str) -> bool:
    """Remove the vector index of ``embeddings_<model>`` (searches become exact)."""
    table = _table_for(db, model)
    info = index_info(db, table)
    if info is None:
        return False
    db.table(table).drop_index(info["name"])
    db.refresh()
    return True


def _parse_name(name: str) -> tuple[str, int | None]:
    """The kind of an index and the rows it was trained on, from its name (IVF_PQ, None if unknown)."""
    for kind, prefix in _NAME_PREFIX.items():
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return kind, int(name[len(prefix):])
    return "IVF_PQ", None


def _table_for(db: Database, model: str) -> str:
    table = S.embeddings_table_name(model)
    if not db.has_table(table):
        raise NotFoundError(
            f"no embeddings for model {model!r} in {db.uri}",
            f"models with embeddings: {', '.join(db.embedding_models()) or 'none yet (ingest first)'}",
        )
    return table
