"""Nearest-neighbour search by cosine distance over one embeddings table.

- no ``where``, given a :class:`~embedscope.store.search_cache.SearchIndexCache` (the API,
  the dashboard and the CLI pass one): the cache's in-memory HNSW graph of the table
  (:mod:`embedscope.store.graph_index`), for tables of at least its ``min_rows`` rows;
- no ``where`` otherwise: LanceDB's vector search — through the ANN index with its refine step when
  the table has one (:mod:`embedscope.store.index`), else an exact scan;
- with ``where`` (a SQL condition over ``images_latest`` columns: ``label``, ``path``,
  ``cluster``, ``is_novel``, ...): an exact scan in the read-only DuckDB connection, so
  any condition combines with the vector one and nothing relevant is filtered away late.

The query image (by sha256 or path) always comes back first at distance exactly 0 when it
passes the filter: it is mathematically at 0, and float rounding or ties with identical
vectors must not push it down.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa

from embedscope.errors import NotFoundError, QueryError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq, ident, isin
from embedscope.store.search_cache import SearchIndexCache, stored_models
from embedscope.store.vectors import vectors_to_numpy

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

RESULT_SCHEMA = pa.schema([
    pa.field("rank", pa.int32()),
    pa.field("sha256", pa.string()),
    pa.field("distance", pa.float32()),
    pa.field("path", pa.string()),
    pa.field("label", pa.string()),
    pa.field("model", pa.string()),
    pa.field("variant", pa.string()),
])


@dataclass
class ResolvedQuery:
    """A query turned into a vector, with the sha256 of the image it came from (if any)."""

    vector: np.ndarray
    model: str
    sha256: str | None


def similar(
    db: Database,
    query: str | np.ndarray,
    *,
    k: int = 10,
    model: str | None = None,
    variant: str = S.VARIANT_FULL,
    where: str | None = None,
    cache: SearchIndexCache | None = None,
) -> pa.Table:
    """The ``k`` nearest images to ``query`` by cosine distance, nearest first.

    ``query``: a sha256, a path recorded in ``sources`` (or an existing file whose content
    is in the database), or a vector. Columns: rank, sha256, distance (``1 - cos``, 0 =
    identical), path, label, model, variant. With a ``cache`` (and no ``where``) the search
    runs on its in-memory graph index; without one, through Lance (see the module docstring).

    >>> similar(db, "cats/img0.jpg", k=5, where="label = 'cats'")  # doctest: +SKIP
    """
    return similar_many(db, [query], k=k, model=model, variant=variant, where=where, cache=cache)[0]


def similar_many(
    db: Database,
    queries: Sequence[str | np.ndarray] | np.ndarray,
    *,
    k: int = 10,
    model: str | None = None,
    variant: str = S.VARIANT_FULL,
    where: str | None = None,
    cache: SearchIndexCache | None = None,
) -> list[pa.Table]:
    """:func:`similar` for many queries in one call: one result table per query, in order.

    ``queries``: a list of sha256s / paths / vectors, or an (m, dim) array of vectors. On the
    graph path all vectors go to the graph in one call (spread over the cores by hnswlib).
    """
    if k < 1:
        raise QueryError(f"k must be at least 1, got {k}")
    if variant not in S.VARIANTS:
        raise QueryError(f"unknown variant {variant!r}", f"one of: {', '.join(S.VARIANTS)}")
    resolved = _resolve_all(db, queries, model=model, variant=variant, cache=cache, where=where)
    if not where and cache is not None:
        tables = _similar_on_graph(db, resolved, k=k, variant=variant, cache=cache)
        if tables is not None:
            return tables
    hits: list[list[tuple[str, float]]] = [[] for _ in resolved]
    for m in sorted({q.model for q in resolved}):
        todo = [i for i, q in enumerate(resolved) if q.model == m]
        found = _search(db, [resolved[i] for i in todo], k=k, variant=variant, where=where, cache=cache)
        for i, h in zip(todo, found):
            hits[i] = h
    return _finish(db, hits, resolved, k=k, variant=variant, where=where, cache=cache)


def _resolve_all(db: Database, queries: Any, *, model: str | None, variant: str,
                 cache: SearchIndexCache | None, where: str | None = None) -> list[ResolvedQuery]:
    """:func:`resolve_query` for each query; vectors of one size pick their model once; a
    sha256 in the cache's graph takes its vector from there (no table read)."""
    if isinstance(queries, np.ndarray) and queries.ndim == 2:
        queries = list(queries)
    model_of_dim: dict[int, str] = {}
    out = []
    for q in queries:
        if isinstance(q, (np.ndarray, list, tuple)):
            vec = np.asarray(q, dtype=np.float32).ravel()
            if vec.size not in model_of_dim:
                model_of_dim[vec.size] = pick_model(db, model, dim=vec.size, cache=cache)
            out.append(ResolvedQuery(vec, model_of_dim[vec.size], None))
        else:
            on_graph = _resolve_on_graph(db, q, model=model, variant=variant, cache=cache) \
                if cache is not None and not where else None
            out.append(on_graph or resolve_query(db, q, model=model, variant=variant, cache=cache))
    return out


def _resolve_on_graph(db: Database, query: str, *, model: str | None, variant: str,
                      cache: SearchIndexCache) -> ResolvedQuery | None:
    """A sha256 query's vector from the cache's graph; None when that cannot say (not a sha256,
    several models, no graph, or the sha256 not in it)."""
    sha = str(query).strip().lower()
    if not _SHA_RE.match(sha):
        return None
    try:
        m = pick_model(db, model, cache=cache)
    except (QueryError, NotFoundError):
        return None
    graph = cache.graph_for(db, m, variant)
    label = cache.graph_rows(db, graph, graph.keys).label_of(sha) if graph is not None else None
    return ResolvedQuery(graph.vector(label), m, sha) if label is not None else None


def _similar_on_graph(db: Database, qs: list[ResolvedQuery], *, k: int, variant: str,
                      cache: SearchIndexCache) -> list[pa.Table] | None:
    """The result tables straight from the cache's graph, built with array operations (a take by
    graph label from :meth:`SearchIndexCache.graph_rows`); None when the queries need the general
    path: several models, no graph, or a query image that is not among its own hits."""
    model = qs[0].model
    if any(q.model != model for q in qs):
        return None
    graph = cache.graph_for(db, model, variant)
    if graph is None:
        return None
    vectors = qs[0].vector[None] if len(qs) == 1 else np.stack([q.vector for q in qs])
    labels, distances, keys = graph.search_labels(vectors, k + 1)  # room for the query image itself
    np.maximum(distances, 0.0, out=distances)
    for i, q in enumerate(qs):
        if q.sha256 is not None:
            own = np.flatnonzero(keys[labels[i]] == q.sha256.encode())
            if len(own) != 1:
                return None
            order = np.r_[own, np.delete(np.arange(labels.shape[1]), own)]
            labels[i], distances[i] = labels[i][order], distances[i][order]
            distances[i, 0] = 0.0
    n = min(k, labels.shape[1])
    labels = labels[:, :n].ravel()
    shas, paths, image_labels = cache.graph_rows(db, graph, keys).columns(labels)
    table = pa.Table.from_arrays([
        _ranks(n, len(qs)), shas, _floats(distances[:, :n]),
        paths, image_labels, _repeated(model, len(labels)), _repeated(variant, len(labels)),
    ], schema=RESULT_SCHEMA)
    return [table.slice(i * n, n) for i in range(len(qs))]


def _floats(values: np.ndarray) -> pa.Array:
    flat = np.ascontiguousarray(values, dtype=np.float32).ravel()
    return pa.Array.from_buffers(pa.float32(), len(flat), [None, pa.py_buffer(flat)])


@lru_cache(maxsize=64)
def _ranks(n: int, queries: int) -> pa.Array:
    return pa.array(np.tile(np.arange(1, n + 1, dtype=np.int32), queries))


@lru_cache(maxsize=64)
def _repeated(text: str, n: int) -> pa.Array:
    return pa.array([text] * n, pa.string())


def _search(db: Database, qs: list[ResolvedQuery], *, k: int, variant: str, where: str | None,
            cache: SearchIndexCache | None) -> list[list[tuple[str, float]]]:
    table = S.embeddings_table_name(qs[0].model)
    if where:
        return _search_sql(db, table, qs, k=k, variant=variant, where=where)
    graph = cache.graph_for(db, qs[0].model, variant) if cache is not None else None
    if graph is not None:
        vectors = qs[0].vector[None] if len(qs) == 1 else np.stack([q.vector for q in qs])
        return graph.search(vectors, k + 1)  # room for the query image itself
    return [_search_lance(db, table, q, k=k, variant=variant, cache=cache) for q in qs]


def resolve_query(db: Database, query: str | np.ndarray, *, model: str | None, variant: str,
                  cache: SearchIndexCache | None = None) -> ResolvedQuery:
    """Turn a sha256 / path / vector into a :class:`ResolvedQuery`."""
    if isinstance(query, np.ndarray) or isinstance(query, (list, tuple)):
        vec = np.asarray(query, dtype=np.float32).ravel()
        return ResolvedQuery(vec, pick_model(db, model, dim=vec.size, cache=cache), None)
    text = str(query).strip()
    sha = text.lower() if _SHA_RE.match(text.lower()) else None
    if sha is None or not _has_embedding(db, sha, model):
        sha = find_sha(db, text) or sha
    if sha is None:
        raise NotFoundError(
            f"no image with sha256 or path {query!r} in {db.uri}",
            "pass a sha256 or a path listed in `sources`; for an image file that is not in the "
            "database use `embedscope similar --db DIR FILE`, which embeds it",
        )
    models = [model] if model else (cache.stored_models(db) if cache is not None else stored_models(db))
    for m in models:
        name = S.embeddings_table_name(m)
        if not db.has_table(name):
            continue
        rows = db.read(name, ["vector"], where=both(eq("sha256", sha), eq("variant", variant)))
        if rows.num_rows:
            return ResolvedQuery(vectors_to_numpy(rows.column("vector"))[0], m, sha)
    raise NotFoundError(f"image {sha[:12]}… has no {variant!r} embedding"
                        + (f" for model {model!r}" if model else ""),
                        "ingest it (with --sam2 / --store-patch-mean for those variants), or pick --variant/--model")


def find_sha(db: Database, query: str) -> str | None:
    """The sha256 an image is stored under, given its sha256, a path in ``sources``/``images``,
    or the path of an existing file whose content is stored."""
    q = query.strip()
    if _SHA_RE.match(q.lower()) and db.count(S.IMAGES, where=eq("sha256", q.lower())):
        return q.lower()
    candidates = [q]
    p = Path(q).expanduser()
    if p.exists():
        candidates.append(str(p.resolve()))
    for cand in candidates:
        for name in (S.SOURCES, S.IMAGES):
            rows = db.read(name, ["sha256"], where=eq("path", cand))
            if rows.num_rows:
                return rows.column("sha256")[0].as_py()
    if p.is_file():
        from embedscope.hashing import sha256_file

        sha = sha256_file(p)
        if db.count(S.IMAGES, where=eq("sha256", sha)):
            return sha
    return None


def _has_embedding(db: Database, sha: str, model: str | None) -> bool:
    names = [S.embeddings_table_name(model)] if model else db.embedding_table_names()
    return any(db.has_table(n) and db.count(n, where=eq("sha256", sha)) for n in names)


# -- the two search paths --------------------------------------------------------------------


def _search_lance(db: Database, table: str, q: ResolvedQuery, *, k: int, variant: str,
                  cache: SearchIndexCache | None) -> list[tuple[str, float]]:
    from embedscope.store.index import search_params_for

    tbl = db.table(table)
    if cache is None:
        tbl.checkout_latest()  # a cache keeps its handles at most `recheck_s` old instead
    fetch = k + 1  # room for the query image itself
    search = tbl.search(q.vector, vector_column_name="vector").distance_type("cosine").limit(fetch)
    sp = cache.search_params(db, table) if cache is not None else search_params_for(db, table)
    if sp is not None:
        search = search.nprobes(sp.nprobes).refine_factor(sp.refine_factor)
        if sp.ef:
            search = search.ef(sp.ef)
    # Post-filtering keeps the index's candidate list intact (prefiltering cost recall: 0.94 vs
    # 0.99 at 1M rows). When other variants crowd the variant asked for out of the top hits,
    # fewer than `fetch` rows come back: then prefilter, which is exact about the variant.
    cond = eq("variant", variant)
    result = search.where(cond, prefilter=False).select(["sha256", "_distance"]).to_arrow()
    if result.num_rows < fetch:
        result = search.where(cond, prefilter=True).select(["sha256", "_distance"]).to_arrow()
    return list(zip(result.column("sha256").to_pylist(), result.column("_distance").to_pylist()))


def _search_sql(db: Database, table: str, qs: list[ResolvedQuery], *, k: int, variant: str,
                where: str) -> list[list[tuple[str, float]]]:
    from embedscope.store.sql import connect, execute

    dim = qs[0].vector.size
    sql = (
        f"SELECT e.sha256, array_cosine_distance(e.vector, $qv::FLOAT[{dim}]) AS distance "
        f"FROM {ident(table)} e JOIN images_latest USING (sha256) "
        f"WHERE e.variant = $variant AND ({where}) "
        f"ORDER BY distance, (e.sha256 = $self) DESC, e.sha256 LIMIT {int(k) + 1}"
    )
    con = connect(db)
    out = []
    try:
        for q in qs:
            result = execute(con, sql, limit=None,
                             params={"qv": q.vector.tolist(), "variant": variant, "self": q.sha256 or ""})
            out.append(list(zip(result.column("sha256").to_pylist(), result.column("distance").to_pylist())))
    finally:
        con.close()
    return out


def _finish(db: Database, hits: list[list[tuple[str, float]]], queries: list[ResolvedQuery], *, k: int,
            variant: str, where: str | None, cache: SearchIndexCache | None) -> list[pa.Table]:
    """One result table per query: the query image first (see the module docstring), ranks,
    paths and labels. Built as one table and sliced, so a batch pays Arrow's overheads once."""
    kept = [_own_image_first(h, q, k=k, where=where) for h, q in zip(hits, queries)]
    shas = [s for one in kept for s, _ in one]
    info = cache.image_info(db, shas) if cache is not None else _image_info(db, shas)
    sizes = [len(one) for one in kept]
    table = pa.Table.from_arrays([
        pa.array(np.concatenate([np.arange(1, n + 1, dtype=np.int32) for n in sizes] or [np.empty(0, np.int32)])),
        pa.array(shas, pa.string()),
        pa.array(np.asarray([d for one in kept for _, d in one], np.float32)),
        pa.array([info.get(s, (None, None))[0] for s in shas], pa.string()),
        pa.array([info.get(s, (None, None))[1] for s in shas], pa.string()),
        pa.array([q.model for q, n in zip(queries, sizes) for _ in range(n)], pa.string()),
        pa.array([variant] * len(shas), pa.string()),
    ], schema=RESULT_SCHEMA)
    starts = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    return [table.slice(start, n) for start, n in zip(starts, sizes)]


def _own_image_first(hits: list[tuple[str, float]], q: ResolvedQuery, *, k: int, where: str | None) -> list[tuple[str, float]]:
    hits = [(s, max(0.0, float(d))) for s, d in hits]
    if q.sha256 is not None:
        found = any(s == q.sha256 for s, _ in hits)
        rest = [(s, d) for s, d in hits if s != q.sha256]
        hits = ([(q.sha256, 0.0)] + rest) if (found or not where) else rest
    return hits[:k]


def _image_info(db: Database, shas: list[str]) -> dict[str, tuple[Any, Any]]:
    if not shas:
        return {}
    rows = db.read(S.IMAGES, ["sha256", "path", "label"], where=isin("sha256", shas))
    return {r["sha256"]: (r["path"], r["label"]) for r in rows.to_pylist()}


def pick_model(db: Database, model: str | None, *, dim: int | None = None,
               cache: SearchIndexCache | None = None) -> str:
    """``model`` if it has embeddings, else the only model with embeddings, else (given a query
    vector's ``dim``) the only model whose table stores vectors of that size."""
    models = cache.stored_models(db) if cache is not None else stored_models(db)
    if model:
        if model not in models:
            raise NotFoundError(f"no embeddings for model {model!r} in {db.uri}",
                                f"models with embeddings: {', '.join(models) or 'none yet'}")
        return model
    if not models:
        raise NotFoundError(f"{db.uri} has no embeddings yet", "run `embedscope ingest` first")
    if len(models) == 1:
        return models[0]
    if dim is not None:
        fits = [m for m in models if stored_dim(db, m) == dim]
        if len(fits) == 1:
            return fits[0]
    raise QueryError(f"the database has embeddings of several models: {', '.join(models)}", "pick one with model=/--model")




def stored_dim(db: Database, model: str) -> int | None:
    """The vector size of ``model``'s embeddings table, read from its schema (no scan)."""
    name = S.embeddings_table_name(model)
    if not db.has_table(name):
        return None
    size = db.dataset(name).schema.field("vector").type.list_size
    return int(size) if size and size > 0 else None
