"""The only module that opens LanceDB.

A :class:`Database` is a folder (or object-store URI) of Lance tables. Writes are upserts
(``merge_insert`` on each table's key, see :mod:`embedscope.store.schema`), so a batch is one
atomic Lance commit per table and re-writing the same rows never duplicates them. Readers
never block: Lance is multi-version, a reader sees the last committed version.

Crash-safety contract used by the ingest pipeline: per batch, ``embeddings`` are committed
before ``images``, and ``images`` before ``sources``. A sha256 counts as done only once its
``images`` row exists, so a crash between commits leaves work that the next run redoes as
an idempotent upsert, never a duplicate and never a hole.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from pathlib import Path
from typing import Any, ContextManager, Sequence

import pyarrow as pa

from embedscope.errors import DatabaseError, EmbedscopeError, NotFoundError
from embedscope.store import locks
from embedscope.store import schema as S
from embedscope.store.filters import eq

LOCK_FILE = locks.WRITER.file

log = logging.getLogger(__name__)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def is_remote(uri: str) -> bool:
    """True for an object-store URI (``s3://bucket/prefix``), False for a local folder."""
    from embedscope.objectstore import is_uri

    return is_uri(uri)


class Database:
    """A handle on one embedscope database. Cheap to create; tables open lazily.

    ``uri`` is a folder or an object-store URI (``s3://bucket/prefix``). ``storage_options``
    are the explicit ones (``--storage-option``); for object stores they are applied on top of
    what the environment provides (see :func:`embedscope.objectstore.resolve_options`).

    >>> db = Database("/tmp/es-db", create=True)      # doctest: +SKIP
    >>> db.count("images")                              # doctest: +SKIP
    0
    """

    def __init__(
        self,
        uri: str | os.PathLike[str],
        *,
        create: bool = False,
        storage_options: dict[str, str] | None = None,
    ) -> None:
        import lancedb

        self.uri = str(uri)
        self.storage_options = dict(storage_options or {})
        if not is_remote(self.uri):
            path = Path(self.uri)
            if not path.exists():
                if not create:
                    raise DatabaseError(
                        f"no database at {self.uri}",
                        "run `embedscope ingest DROP --db DIR` first, or check the --db path",
                    )
                path.mkdir(parents=True, exist_ok=True)
            elif not path.is_dir():
                raise DatabaseError(f"{self.uri} is not a folder", "point --db at a database folder")
        kwargs: dict[str, Any] = {}
        resolved = self.storage_options
        if is_remote(self.uri):
            from embedscope.objectstore import resolve_options

            resolved = resolve_options(self.uri, self.storage_options)
        if resolved:
            kwargs["storage_options"] = resolved
        self._tables: dict[str, Any] = {}
        try:
            self._conn = lancedb.connect(self.uri, **kwargs)
            if is_remote(self.uri):
                names = self.table_names()  # reach the store now: a bad endpoint fails here, in one line
                if not names and not create:
                    raise DatabaseError(
                        f"no database at {self.uri} (no tables under this prefix)",
                        "run `embedscope ingest DROP --db URI` first, or check the --db URI",
                    )
        except EmbedscopeError:
            raise
        except (ValueError, OSError, RuntimeError) as exc:
            if not is_remote(self.uri):
                raise
            from embedscope.objectstore import store_error

            raise store_error(self.uri, exc, options=self.storage_options) from None

    # -- tables ---------------------------------------------------------------------------

    def table_names(self) -> list[str]:
        conn = self._conn
        if not hasattr(conn, "list_tables"):  # older lancedb
            return sorted(conn.table_names())
        names: list[str] = []
        token = None
        while True:
            result = conn.list_tables(page_token=token) if token else conn.list_tables()
            names.extend(getattr(result, "tables", result))
            token = getattr(result, "page_token", None)
            if not token:
                return sorted(names)

    def has_table(self, name: str) -> bool:
        return name in self.table_names()

    def table(self, name: str) -> Any:
        """The LanceDB table ``name``; raises :class:`NotFoundError` if it does not exist."""
        if name not in self._tables:
            if not self.has_table(name):
                raise NotFoundError(
                    f"table {name!r} does not exist in {self.uri}",
                    "ingest or analyze first, or see `embedscope stats`",
                )
            self._tables[name] = self._conn.open_table(name)
        return self._tables[name]

    def ensure_table(self, name: str, schema: pa.Schema) -> Any:
        """Open ``name``, creating it (empty, with ``schema``) if absent.

        A table whose creation was cut off (process killed before its first version was
        committed) is listed but cannot be opened; it holds no data, so it is created again.
        """
        if name not in self._tables:
            if self.has_table(name):
                try:
                    self._tables[name] = self._conn.open_table(name)
                except ValueError as exc:
                    if "not found" not in str(exc):
                        raise
                    self._tables[name] = self._conn.create_table(name, schema=schema, exist_ok=True)
            else:
                self._tables[name] = self._conn.create_table(name, schema=schema, exist_ok=True)
        return self._tables[name]

    def refresh(self) -> None:
        """Forget open table handles so the next read sees the latest committed versions."""
        self._tables.clear()

    # -- reading --------------------------------------------------------------------------

    def dataset(self, name: str) -> Any:
        """The underlying ``lance.LanceDataset`` (latest version)."""
        tbl = self.table(name)
        tbl.checkout_latest()
        return tbl.to_lance()

    def read(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        where: str | None = None,
    ) -> pa.Table:
        """Rows of ``name`` (all, or filtered by a Lance SQL ``where``). Missing table: empty."""
        if not self.has_table(name):
            schema = S.FIXED_SCHEMAS.get(name)
            if schema is None:
                raise NotFoundError(f"table {name!r} does not exist in {self.uri}")
            empty = schema.empty_table()
            return empty.select(list(columns)) if columns else empty
        ds = self.dataset(name)
        return ds.to_table(columns=list(columns) if columns else None, filter=where)

    def count(self, name: str, where: str | None = None) -> int:
        if not self.has_table(name):
            return 0
        return int(self.dataset(name).count_rows(filter=where))

    def version(self, name: str) -> int | None:
        if not self.has_table(name):
            return None
        tbl = self.table(name)
        tbl.checkout_latest()
        return int(tbl.version)

    # -- embeddings tables ----------------------------------------------------------------

    def embedding_table_names(self) -> list[str]:
        return [n for n in self.table_names() if n.startswith(S.EMBEDDINGS_PREFIX)]

    def read_embeddings(
        self,
        model: str,
        variant: str = S.VARIANT_FULL,
        columns: Sequence[str] = ("sha256", "vector"),
    ) -> pa.Table:
        name = S.embeddings_table_name(model)
        if not self.has_table(name):
            raise NotFoundError(
                f"no embeddings for model {model!r} in {self.uri}",
                f"ingest with --model {model}, or pick one of: {', '.join(self.embedding_models()) or 'none yet'}",
            )
        return self.read(name, columns, where=eq("variant", variant))

    def embedding_models(self) -> list[str]:
        """Model names that have embeddings, read from the tables' ``model`` column."""
        models: set[str] = set()
        for name in self.embedding_table_names():
            col = self.dataset(name).to_table(columns=["model"]).column("model")
            models.update(v for v in pa.compute.unique(col).to_pylist() if v)
        return sorted(models)

    def embedding_counts(self) -> dict[str, int]:
        """``{"<model>/<variant>": rows}`` across all embeddings tables."""
        counts: dict[str, int] = {}
        for name in self.embedding_table_names():
            tbl = self.dataset(name).to_table(columns=["model", "variant"])
            if tbl.num_rows == 0:
                continue
            grouped = tbl.group_by(["model", "variant"]).aggregate([([], "count_all")])
            for row in grouped.to_pylist():
                counts[f"{row['model']}/{row['variant']}"] = int(row["count_all"])
        return dict(sorted(counts.items()))

    # -- writing --------------------------------------------------------------------------

    def upsert(self, name: str, rows: pa.Table, *, update_existing: bool = True) -> int:
        """Insert rows whose key is new; update (or keep, if not ``update_existing``) the rest.

        One Lance commit. Rows are cast to the table's schema; duplicate keys inside ``rows``
        keep their first occurrence. Returns the number of rows sent.
        """
        if rows.num_rows == 0:
            return 0
        if name.startswith(S.EMBEDDINGS_PREFIX):
            dim = rows.schema.field("vector").type.list_size
            schema, keys = S.embeddings_schema(dim), S.EMBEDDING_KEYS
        else:
            schema, keys = S.FIXED_SCHEMAS[name], S.KEYS[name]
        rows = _conform(rows, schema)
        rows = _first_per_key(rows, keys)
        tbl = self.ensure_table(name, schema)
        merge = tbl.merge_insert(keys)
        if update_existing:
            merge = merge.when_matched_update_all()
        merge.when_not_matched_insert_all().execute(rows)
        return rows.num_rows

    def append(self, name: str, rows: pa.Table) -> int:
        """Append rows known to be new (e.g. a new run's result rows streamed in batches): one
        Lance commit, no key lookup, so its cost does not grow with the table. The caller
        guarantees the keys are new; use :meth:`upsert` otherwise."""
        if rows.num_rows == 0:
            return 0
        schema = S.FIXED_SCHEMAS[name]
        rows = _conform(rows, schema)
        self.ensure_table(name, schema).add(rows)
        return rows.num_rows

    def delete(self, name: str, where: str) -> int:
        """Delete the rows of ``name`` matching ``where`` (built with :mod:`embedscope.store.filters`);
        one Lance commit. Returns how many rows matched. The caller holds the writer lock."""
        if not self.has_table(name) or not where:
            return 0
        matched = self.count(name, where=where)
        if matched:
            self.table(name).delete(where)
            self.refresh()
        return matched

    def writer_lock(self, *, wait: float = 0.0, owner: str = "ingest",
                    stop: threading.Event | None = None) -> ContextManager[bool]:
        """Hold the database's single-writer lock (``with db.writer_lock(): ...``); with
        ``wait`` > 0, retry that many seconds (``inf``: for ever). Yields True once held, False
        if ``stop`` was set while waiting. How it is held depends on the store
        (:mod:`embedscope.store.locks`): an OS file lock locally, a renewed lease object on S3,
        none on other object stores (docs/object-storage.md)."""
        return locks.hold(self.uri, self.storage_options, locks.WRITER, owner=owner, wait=wait, stop=stop)

    def watch_lock(self, *, wait: float = 0.0, owner: str = "watch",
                   stop: threading.Event | None = None) -> ContextManager[bool]:
        """Hold the database's watch lock for a daemon's lifetime: one ``embedscope watch`` per
        database. Same waiting and yield as :meth:`writer_lock`."""
        return locks.hold(self.uri, self.storage_options, locks.WATCH, owner=owner, wait=wait, stop=stop)


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """Order, fill (with nulls) and cast ``rows`` to ``schema``."""
    arrays = []
    for fld in schema:
        if fld.name in rows.column_names:
            arrays.append(rows.column(fld.name).cast(fld.type))
        else:
            arrays.append(pa.nulls(rows.num_rows, fld.type))
    extra = set(rows.column_names) - set(schema.names)
    if extra:
        raise DatabaseError(f"unknown column(s) {sorted(extra)} for this table")
    return pa.Table.from_arrays(arrays, schema=schema)


def _first_per_key(rows: pa.Table, keys: list[str]) -> pa.Table:
    seen: set[tuple] = set()
    keep = []
    cols = [rows.column(k).to_pylist() for k in keys]
    for i, key in enumerate(zip(*cols)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return rows if len(keep) == rows.num_rows else rows.take(keep)
