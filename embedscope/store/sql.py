"""Read-only SQL over the database's tables, through DuckDB.

Each Lance table is registered in an in-memory DuckDB connection as an Arrow dataset, so
DuckDB scans it in place (projection and filter push-down, no copy). Tables that do not
exist yet appear as empty tables with their schema, so queries never fail on a fresh
database.

Read-only by construction, in two layers:

1. only a single ``SELECT`` statement is accepted (DuckDB's own parser decides, so
   ``DROP``/``COPY``/``ATTACH``/``INSTALL``/``SET``/``PRAGMA`` are refused before running);
2. the connection itself runs with ``enable_external_access=false`` (no file system, no
   network, no extension loading or installing, no ``ATTACH``), Python replacement scans off,
   extension auto-loading off, and the configuration locked so a query cannot undo any of it.
   ``read_csv('/etc/passwd')`` is therefore refused by DuckDB even inside a ``SELECT``.

Bounded, by :class:`SqlLimits` (set before the lockdown, so a query cannot raise them): a
statement timeout (a timer thread calls ``con.interrupt()``), DuckDB's ``memory_limit``, a
private spill folder capped by ``max_temp_directory_size`` (removed when the connection
closes), and DuckDB's thread count. Each limit that stops a query raises a one-line
:class:`QueryError` naming the setting that raises it.

Views and macros defined on top of the tables:

- ``embeddings``: ``UNION ALL BY NAME`` of every ``embeddings_<model>`` table, ``vector`` as
  ``FLOAT[]`` (each ``embeddings_<model>`` is visible too, ``vector`` as ``FLOAT[dim]``);
- ``images_latest``: ``images`` plus the latest ``analyze`` run's ``cluster``, ``x``, ``y``,
  ``novelty_score``, ``is_novel``, ``is_contaminated``, ``dup_group`` (nulls before any run),
  overlaid with the novelty-only runs scored against it, so images the daemon scored show up;
- ``image_tags``: the current tags (sha256, tag, note, tagged_at) from the ``tags`` log, and
  ``images_latest.tags`` their names as a list;
  and the latest ``analyze --zero-shot`` run's ``zero_shot_tag``, ``zero_shot_probability``,
  ``zero_shot_margin``, ``label_disagreement`` (nulls before any); ``verdicts``: the arrival
  verdicts of the image's latest checked drop (sorted; null if never checked, docs/verdicts.md);
- ``label_conflicts``: every content seen under more than one label (sha256, labels, paths, n_labels);
- ``image_sha(q)``: the sha256 of an image given by sha256 or by a path in ``sources``;
- ``vector_of(q, model_name := NULL, variant_name := 'full')``: that image's vector (``FLOAT[]``);
- ``cosine_distance(a, b)``: ``1 - cosine similarity`` of two vectors (0 = identical);
- ``similar_to(q, model_name := NULL, variant_name := 'full')``: a table of every embedded image of
  the same model and variant with its ``distance`` to ``q`` — join it, filter it with any
  ``WHERE``, then ``ORDER BY distance LIMIT k``. Exact (brute force), so use ``similar`` /
  ``embedscope similar`` for plain top-k on large tables, which uses the ANN index.

>>> run_sql(db, "SELECT label, count(*) n FROM images GROUP BY label ORDER BY n DESC")  # doctest: +SKIP
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pyarrow as pa

from embedscope.errors import DependencyError, QueryError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import ident, literal
from embedscope.store.runs import KIND_ZERO_SHOT, latest_run, overlay_runs

TRUNCATED_KEY = b"embedscope.truncated"


@dataclass(frozen=True)
class SqlLimits:
    """How long and how much one query may take. ``None`` = no limit of that kind.

    ``memory_limit`` / ``temp_limit`` are DuckDB sizes (``"2GB"``, ``"500MB"``); ``threads``
    is DuckDB's worker count. ``timeout_flag`` / ``memory_flag`` name the setting that raises
    each limit in the caller's interface, for the error's hint.
    """

    timeout_s: float | None = 30.0
    memory_limit: str | None = "2GB"
    temp_limit: str | None = "4GB"
    threads: int | None = None
    timeout_flag: str = "--timeout"
    memory_flag: str = "--memory-limit"
    spill_flag: str = "--spill-limit"

    def settings(self, temp_dir: str | None) -> list[str]:
        """The ``SET`` statements that apply these limits (before the lockdown)."""
        out = []
        if self.memory_limit:
            out.append(f"SET memory_limit = {literal(self.memory_limit)}")
        if temp_dir is not None:
            out.append(f"SET temp_directory = {literal(temp_dir)}")
        if self.temp_limit:
            out.append(f"SET max_temp_directory_size = {literal(self.temp_limit)}")
        if self.threads:
            out.append(f"SET threads = {int(self.threads)}")
        return out


@dataclass(frozen=True)
class SqlFunction:
    """A Python function a query may call, registered before the lockdown: ``params`` and
    ``returns`` are DuckDB type names; NULL arguments reach ``fn`` as ``None``."""

    fn: Callable[..., Any]
    params: tuple[str, ...]
    returns: str


CLI_LIMITS = SqlLimits()  # `embedscope query`, the Python API
DASHBOARD_LIMITS = SqlLimits(timeout_s=10.0, memory_limit="1GB", temp_limit="2GB", threads=2,
                             timeout_flag="--sql-timeout", memory_flag="--sql-memory-limit",
                             spill_flag="--sql-spill-limit")


class Sandbox:
    """A locked-down DuckDB connection plus its limits and private spill folder.

    Behaves as the DuckDB connection (attribute access passes through); :meth:`close` also
    removes the spill folder."""

    def __init__(self, con: Any, limits: SqlLimits, temp_dir: str | None) -> None:
        self.con = con
        self.limits = limits
        self.temp_dir = temp_dir

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            if self.temp_dir:
                shutil.rmtree(self.temp_dir, ignore_errors=True)

# Set before the user's statement runs; ``lock_configuration`` must come last.
_LOCKDOWN = (
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET enable_external_access = false",
    "SET lock_configuration = true",
)

_ALLOWED = "SELECT"

_MACROS = (
    # sha256 of an image given by sha256 or path; an error (not an empty result) if unknown
    """CREATE MACRO image_sha(q) AS COALESCE(
        (SELECT sha256 FROM images WHERE sha256 = q LIMIT 1),
        (SELECT sha256 FROM sources WHERE path = q ORDER BY seen_at DESC LIMIT 1),
        (SELECT sha256 FROM images WHERE path = q LIMIT 1),
        error('no image with sha256 or path ' || q || ' in images/sources'))""",
    """CREATE MACRO cosine_distance(a, b) AS 1.0 - list_cosine_similarity(a::FLOAT[], b::FLOAT[])""",
    """CREATE MACRO vector_of(q, model_name := NULL, variant_name := 'full') AS (
        SELECT COALESCE(any_value(e.vector),
                        error('no ' || variant_name || ' embedding for ' || q))
        FROM embeddings e
        WHERE e.sha256 = image_sha(q) AND e.variant = variant_name
          AND (model_name IS NULL OR e.model = model_name))""",
    """CREATE MACRO similar_to(q, model_name := NULL, variant_name := 'full') AS TABLE
        WITH target AS (
            SELECT e.model AS t_model, e.vector AS t_vector FROM embeddings e
            WHERE e.sha256 = image_sha(q) AND e.variant = variant_name
              AND (model_name IS NULL OR e.model = model_name)
            LIMIT 1)
        SELECT e.sha256, e.model, e.variant,
               greatest(1.0 - list_cosine_similarity(e.vector, target.t_vector), 0.0) AS distance
        FROM embeddings e JOIN target ON e.model = target.t_model
        WHERE e.variant = variant_name""",
)


# The current tags: the latest action per (sha256, tag) in the ``tags`` log is an ``add``.
IMAGE_TAGS_VIEW = """CREATE VIEW image_tags AS
    SELECT sha256, tag, note, tagged_at FROM (
        SELECT *, row_number() OVER (PARTITION BY sha256, tag ORDER BY tagged_at DESC) AS newest FROM tags)
    WHERE newest = 1 AND action = 'add'"""

# Content seen under more than one label (``labels`` keeps every label per sha256), first-seen first.
LABEL_CONFLICTS_VIEW = """CREATE VIEW label_conflicts AS
    SELECT sha256, list(label ORDER BY first_seen, label) AS labels, list(path ORDER BY first_seen, label) AS paths,
           count(DISTINCT label) AS n_labels
    FROM labels GROUP BY sha256 HAVING count(DISTINCT label) > 1"""


# with the functions ``_text_vector(text, model)`` and ``_text_model(model)`` (a NULL model = the
# caller's default text model); the query vector is computed once, in the CTE
_TEXT_MACROS = (
    """CREATE MACRO text_vector(t, model_name := NULL) AS _text_vector(t, model_name)""",
    """CREATE MACRO similar_to_text(t, k := 20, model_name := NULL, variant_name := 'full') AS TABLE
        WITH q AS (SELECT _text_model(model_name) AS q_model, _text_vector(t, model_name) AS q_vector)
        SELECT e.sha256, e.model, e.variant,
               greatest(1.0 - list_cosine_similarity(e.vector, q.q_vector), 0.0) AS distance
        FROM embeddings e JOIN q ON e.model = q.q_model
        WHERE e.variant = variant_name
        ORDER BY distance, e.sha256 LIMIT k""",
)


def run_sql(db: Database, sql: str, *, limit: int | None = 10_000, limits: SqlLimits = CLI_LIMITS,
            functions: Mapping[str, SqlFunction] | None = None) -> pa.Table:
    """Run one read-only ``SELECT`` over the database's tables; at most ``limit`` rows.

    Raises :class:`QueryError` for anything that is not a single ``SELECT``, for anything
    the sandbox refuses (files, network, extensions), for SQL errors and when a query passes
    one of ``limits`` (time, memory, spill). When rows were cut at ``limit`` the result's
    schema metadata has ``embedscope.truncated = "true"``. ``functions``: see :func:`connect`.
    """
    con = connect(db, limits=limits, functions=functions)
    try:
        return execute(con, sql, limit=limit)
    finally:
        con.close()


def connect(db: Database, *, limits: SqlLimits = CLI_LIMITS,
            functions: Mapping[str, SqlFunction] | None = None) -> Sandbox:
    """An in-memory DuckDB connection with every table registered, limited by ``limits`` and
    locked down read-only. Close it (it owns a spill folder).

    ``functions``: Python functions by name, registered before the lockdown; given
    ``_text_vector`` and ``_text_model`` the text macros (``text_vector``, ``similar_to_text``)
    are defined too."""
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a dependency
        raise DependencyError("duckdb is not installed", "pip install duckdb") from None
    temp_dir = tempfile.mkdtemp(prefix="embedscope-sql-")
    box = Sandbox(duckdb.connect(":memory:"), limits, temp_dir)
    try:
        _register_tables(box.con, db)
        for stmt in _MACROS:
            box.execute(stmt)
        box.execute(IMAGE_TAGS_VIEW)
        box.execute(LABEL_CONFLICTS_VIEW)
        _register_functions(box.con, functions or {})
        box.execute(_images_latest_view(db))
        for stmt in (*limits.settings(temp_dir), *_LOCKDOWN):
            box.execute(stmt)
    except Exception:
        box.close()
        raise
    return box


def execute(con: Sandbox, sql: str, *, limit: int | None = 10_000, params: Any = None) -> pa.Table:
    """Check that ``sql`` is one ``SELECT`` and run it on a :func:`connect` connection, within
    the connection's limits."""
    check_read_only(con, sql)
    timeout = con.limits.timeout_s
    timer = threading.Timer(timeout, con.interrupt) if timeout else None
    if timer is not None:
        timer.daemon = True
        timer.start()
    try:
        return _fetch(con, sql, limit=limit, params=params)
    except QueryError:
        raise
    except Exception as exc:
        raise _limit_error(exc, con.limits, timed_out=timer is not None and timer.finished.is_set()) from None
    finally:
        if timer is not None:
            timer.cancel()


def _fetch(con: Sandbox, sql: str, *, limit: int | None, params: Any) -> pa.Table:
    import duckdb

    try:
        rel = con.sql(sql, params=params) if params else con.sql(sql)
        reader = rel.to_arrow_reader(8192)
        batches, rows, truncated = [], 0, False
        for batch in reader:
            if limit is not None and rows + batch.num_rows > limit:
                batches.append(batch.slice(0, limit - rows))
                rows = limit
                truncated = True
                break
            batches.append(batch)
            rows += batch.num_rows
        table = pa.Table.from_batches(batches, schema=reader.schema)
    except duckdb.PermissionException as exc:
        raise QueryError(f"refused: {_first_line(exc)}",
                         "queries are read-only and can only read the database's tables") from None
    except (duckdb.InterruptException, duckdb.OutOfMemoryException):
        raise  # the caller names the limit
    except duckdb.Error as exc:
        if "temp" in str(exc).lower() and "directory" in str(exc).lower():
            raise  # the spill limit
        raise QueryError(f"SQL error: {_first_line(exc)}", _hint_for(exc)) from None
    if truncated:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), TRUNCATED_KEY: b"true"})
    return table


def check_read_only(con: Any, sql: str) -> None:
    """Raise :class:`QueryError` unless ``sql`` parses as exactly one ``SELECT`` statement."""
    import duckdb

    if not sql or not sql.strip():
        raise QueryError("empty query", 'pass one SELECT statement, e.g. "SELECT count(*) FROM images"')
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"SQL syntax error: {_first_line(exc)}") from None
    if len(statements) != 1:
        raise QueryError(f"expected one statement, got {len(statements)}", "run one SELECT at a time")
    kind = statements[0].type.name
    if kind != _ALLOWED:
        raise QueryError(
            f"refused: only SELECT queries are allowed, not {kind}",
            "the SQL interface is read-only; tables change only through ingest and analyze",
        )


def is_truncated(table: pa.Table) -> bool:
    """Whether :func:`run_sql` cut ``table`` at its row limit."""
    return (table.schema.metadata or {}).get(TRUNCATED_KEY) == b"true"


def visible_tables(db: Database) -> list[str]:
    """The names a query can use, fixed tables and views first, then ``embeddings_<model>``."""
    return [*S.FIXED_SCHEMAS, "embeddings", "images_latest", "image_tags", "label_conflicts", *db.embedding_table_names()]


# -- registration ----------------------------------------------------------------------------


def _register_tables(con: Any, db: Database) -> None:
    existing = set(db.table_names())
    for name, schema in S.FIXED_SCHEMAS.items():
        con.register(name, db.dataset(name) if name in existing else schema.empty_table())
    parts = []
    for name in sorted(n for n in existing if n.startswith(S.EMBEDDINGS_PREFIX)):
        con.register(name, db.dataset(name))
        parts.append(f"SELECT * REPLACE (vector::FLOAT[] AS vector) FROM {ident(name)}")
    if not parts:
        empty = _flexible_embeddings_schema().empty_table()
        con.register("_embeddings_empty", empty)
        parts.append("SELECT * FROM _embeddings_empty")
    con.execute("CREATE VIEW embeddings AS " + " UNION ALL BY NAME ".join(parts))


def _register_functions(con: Any, functions: Mapping[str, SqlFunction]) -> None:
    import duckdb
    from duckdb.func import FunctionNullHandling

    for name, f in functions.items():
        con.create_function(name, f.fn, [duckdb.sqltype(p) for p in f.params], duckdb.sqltype(f.returns),
                            null_handling=FunctionNullHandling.SPECIAL, side_effects=False)
    if {"_text_vector", "_text_model"} <= set(functions):
        for stmt in _TEXT_MACROS:
            con.execute(stmt)


def _flexible_embeddings_schema() -> pa.Schema:
    fixed = S.embeddings_schema(1)
    return pa.schema([pa.field("vector", pa.list_(pa.float32())) if f.name == "vector" else f for f in fixed])


def _images_latest_view(db: Database) -> str:
    """``images`` plus the latest analyze run's values, overlaid with the novelty-only runs scored
    against that run (``analyze --novelty-only``, ``watch --on-batch-analyze``): a later run wins."""
    run = latest_run(db)
    ranked = overlay_runs(db, run) if run else []
    runs = ", ".join(f"({literal(r.run_id)}, {rank})" for rank, r in enumerate(ranked)) or "(NULL, 0)"
    cluster = literal(run.primary_cluster if run else None)
    projection = literal(run.primary_projection if run else None)
    dims = literal(run.primary_dims if run else 2)
    zero_shot = latest_run(db, kind=KIND_ZERO_SHOT)
    return f"""CREATE VIEW images_latest AS
        WITH r(run_id, rank) AS (VALUES {runs})
        SELECT i.*, c.cluster, p.x, p.y, f.novelty_score, f.is_novel, f.is_contaminated, f.dup_group,
               COALESCE(t.tags, CAST([] AS VARCHAR[])) AS tags,
               z.zero_shot_tag, z.zero_shot_probability, z.zero_shot_margin, z.label_disagreement,
               v.verdicts
        FROM images i
        LEFT JOIN ({LATEST_VERDICTS}) v USING (sha256)
        LEFT JOIN (SELECT sha256, list(tag ORDER BY tag) AS tags FROM image_tags GROUP BY sha256) t USING (sha256)
        LEFT JOIN (SELECT sha256, arg_max(cluster, rank) AS cluster FROM clusters JOIN r USING (run_id)
                   WHERE method = {cluster} GROUP BY sha256) c USING (sha256)
        LEFT JOIN (SELECT sha256, arg_max(x, rank) AS x, arg_max(y, rank) AS y FROM projections
                   JOIN r USING (run_id) WHERE method = {projection} AND dims = {dims}
                   GROUP BY sha256) p USING (sha256)
        LEFT JOIN (SELECT sha256, arg_max(novelty_score, rank) AS novelty_score,
                          arg_max(is_novel, rank) AS is_novel, arg_max(is_contaminated, rank) AS is_contaminated,
                          arg_max(dup_group, rank) AS dup_group
                   FROM flags JOIN r USING (run_id) GROUP BY sha256) f USING (sha256)
        LEFT JOIN (SELECT sha256, tag AS zero_shot_tag, probability AS zero_shot_probability,
                          margin AS zero_shot_margin, label_disagreement FROM zero_shot
                   WHERE run_id = {literal(zero_shot.run_id if zero_shot else None)}) z USING (sha256)"""


# issue 17: per sha256, the distinct verdicts of the latest drop (by created_at, then drop_id) that judged it
LATEST_VERDICTS = """SELECT sha256, list(DISTINCT verdict ORDER BY verdict) AS verdicts
    FROM arrivals JOIN (SELECT sha256, arg_max(drop_id, (created_at, drop_id)) AS drop_id
                        FROM arrivals GROUP BY sha256) USING (sha256, drop_id)
    GROUP BY sha256"""


def _limit_error(exc: BaseException, limits: SqlLimits, *, timed_out: bool) -> BaseException:
    """The one-line :class:`QueryError` for a query a limit stopped (other errors unchanged)."""
    import duckdb

    text = str(exc).lower()
    if isinstance(exc, duckdb.InterruptException) and timed_out:
        return QueryError(f"query stopped after {limits.timeout_s:g} s (statement timeout)",
                          f"narrow it, add LIMIT, or raise {limits.timeout_flag}")
    if "max_temp_directory_size" in text or ("temp" in text and "directory" in text):
        return QueryError(f"query stopped: it spilled more than {limits.temp_limit} to disk (spill limit)",
                          f"narrow it, add LIMIT, or raise {limits.spill_flag}")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryError(f"query stopped: it needed more than {limits.memory_limit} of memory (memory limit)",
                          f"narrow it, add LIMIT, or raise {limits.memory_flag}")
    if isinstance(exc, duckdb.InterruptException):
        return QueryError("query interrupted")
    if isinstance(exc, duckdb.Error):
        return QueryError(f"SQL error: {_first_line(exc)}", _hint_for(exc))
    return exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _hint_for(exc: BaseException) -> str:
    text = str(exc)
    if "does not exist" in text and ("Table" in text or "Catalog" in text):
        return ("tables: images, sources, quarantine, embeddings, embeddings_<model>, masks, runs, "
                "clusters, projections, flags, zero_shot, metrics, images_latest")
    return ""
