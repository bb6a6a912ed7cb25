"""Read-side helpers: counts and lookups used by the CLI, analysis and dashboard."""

from __future__ import annotations

from typing import Any

from embedscope.store import schema as S
from embedscope.store.db import Database


def stats(db: Database) -> dict[str, Any]:
    """Row counts: images, sources, quarantined, and embeddings per ``model/variant``."""
    return {
        "images": db.count(S.IMAGES),
        "sources": db.count(S.SOURCES),
        "quarantined": db.count(S.QUARANTINE),
        "embeddings": db.embedding_counts(),
        "masks": db.count(S.MASKS),
        "runs": db.count(S.RUNS),
    }


# --- provisional (issue 7), replaced by issue 6 on merge ---
# Minimal stand-ins for issue 6's `run_sql` and `similar`, with the agreed signatures, so
# the dashboard works on this branch. Naive on purpose: every table is read into memory.

_SQL_START = ("select", "with", "from", "describe", "show", "explain", "values", "table", "pivot", "summarize")


def _strip_sql_comments(sql: str) -> str:
    import re

    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.S)
    return re.sub(r"--[^\n]*", " ", sql).strip()


def run_sql(db: Database, sql: str, *, limit: int = 10_000) -> "pa.Table":
    """Run one read-only SQL statement over the database's tables (DuckDB); at most ``limit`` rows.

    Every Lance table is visible by name, and ``embeddings`` is the union of the
    ``embeddings_<model>`` tables. Anything but a single SELECT-like statement raises
    :class:`~embedscope.errors.QueryError`.
    """
    import duckdb
    import pyarrow as pa

    from embedscope.errors import QueryError

    body = _strip_sql_comments(sql).rstrip(";").strip()
    if not body:
        raise QueryError("empty query", "write a SELECT statement")
    if ";" in body:
        raise QueryError("only one statement per query", "remove the extra ';'-separated statements")
    if not body.split(None, 1)[0].lower() in _SQL_START:
        raise QueryError("only read-only queries are allowed", "start the query with SELECT or WITH")
    con = duckdb.connect(":memory:")
    try:
        names = db.table_names()
        for name in names:
            con.register(name, db.read(name))
        emb = [n for n in names if n.startswith(S.EMBEDDINGS_PREFIX)]
        if emb:
            union = " UNION ALL BY NAME ".join(f'SELECT * FROM "{n}"' for n in emb)
            con.execute(f"CREATE TEMP VIEW embeddings AS {union}")
        try:
            result = con.sql(f"SELECT * FROM ({body}) AS q LIMIT {int(limit)}").to_arrow_table()
        except duckdb.Error as exc:
            raise QueryError(f"query failed: {str(exc).splitlines()[0]}", "check table and column names (see `embedscope stats`)") from None
        return result if isinstance(result, pa.Table) else pa.table(result)
    finally:
        con.close()


def similar(
    db: Database,
    query: Any,
    *,
    k: int = 10,
    model: str | None = None,
    variant: str = "full",
    where: str | None = None,
) -> "pa.Table":
    """The ``k`` nearest images to ``query`` (a sha256, a stored path, or a vector) by cosine
    distance, ascending. Columns: sha256, path, distance. Brute force over all vectors."""
    import numpy as np
    import pyarrow as pa

    from embedscope.errors import NotFoundError

    models = db.embedding_models()
    if not models:
        raise NotFoundError(f"no embeddings in {db.uri}", "ingest first")
    model = model or models[0]
    table = db.read(S.embeddings_table_name(model), ["sha256", "vector"],
                    where=f"variant = '{variant}'" + (f" AND ({where})" if where else ""))
    shas = table.column("sha256").to_pylist()
    if not shas:
        return pa.table({"sha256": pa.array([], pa.string()), "path": pa.array([], pa.string()),
                         "distance": pa.array([], pa.float32())})
    vectors = np.asarray(table.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False),
                         np.float64).reshape(len(shas), -1)
    if isinstance(query, str):
        sha = query
        if sha not in shas:
            found = db.read(S.SOURCES, ["sha256"], where=f"path = '{query.replace(chr(39), chr(39) * 2)}'")
            if found.num_rows == 0 or found.column("sha256")[0].as_py() not in shas:
                raise NotFoundError(f"no {model}/{variant} embedding for {query!r}", "check the sha256 or path")
            sha = found.column("sha256")[0].as_py()
        q = vectors[shas.index(sha)]
    else:
        q = np.asarray(query, np.float64).ravel()
    q = q / (np.linalg.norm(q) or 1.0)
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0] = 1.0
    dist = 1.0 - (vectors @ q) / norms
    order = np.argsort(dist, kind="stable")[: int(k)]
    top = [shas[i] for i in order]
    paths = {r["sha256"]: r["path"] for r in db.read(S.IMAGES, ["sha256", "path"]).to_pylist()}
    return pa.table({"sha256": pa.array(top, pa.string()),
                     "path": pa.array([paths.get(s) for s in top], pa.string()),
                     "distance": pa.array(dist[order], pa.float32())})
# --- end provisional ---
