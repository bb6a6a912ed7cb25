"""Consistency check and repair of a database: what a killed writer can leave behind.

Problems (``check`` exits 1 on them; ``repair`` removes them, under the writer lock):

- **orphan embeddings**: ``embeddings_<model>`` rows whose sha256 has no ``images`` row (an ingest
  killed between its embeddings and images commits; the next ingest of that file redoes them);
- **orphan results**: ``clusters`` / ``projections`` / ``flags`` / ``metrics`` / ``run_models``
  rows whose ``run_id`` has no ``runs`` row (an ``analyze`` killed before its last commit). Analysis
  takes no writer lock, so a run id younger than ``grace`` seconds (the timestamp in the id) may
  be a run still writing: it is reported as *pending* and left alone;
- **stale quarantine**: a quarantined path that a later ingest stored cleanly (the same path in
  ``sources`` with a newer ``seen_at``).

Upkeep (reported, never an exit 1; ``repair`` does it): an ANN index with too many rows not
covered (:func:`embedscope.store.index.maybe_optimize` folds them in) and tables of many small
fragments (compacted, keeping an hour of old versions for readers still on one).

>>> report = check(Database("demo/db"))             # doctest: +SKIP
>>> report.problems, report.summary()              # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now
from embedscope.store.filters import both, either, eq, isin

log = logging.getLogger(__name__)

RESULT_TABLES = (S.CLUSTERS, S.PROJECTIONS, S.FLAGS, S.METRICS, S.RUN_MODELS)
DEFAULT_GRACE_S = 24 * 3600.0  # an analyze run longer than this may lose its rows to a concurrent repair
COMPACT_FRAGMENTS = 32  # a table of more data fragments than this is due for compaction
DELETE_CHUNK = 1000  # values per IN (...) filter
KEEP_VERSIONS = dt.timedelta(hours=1)  # as the daemon's compaction: readers on an old version keep it


@dataclass
class CheckReport:
    """What :func:`check` found (and :func:`repair` did). Counts are rows."""

    orphan_embeddings: dict[str, int] = field(default_factory=dict)  # table -> rows
    orphan_results: dict[str, int] = field(default_factory=dict)  # table -> rows
    orphan_runs: list[str] = field(default_factory=list)  # run ids with result rows and no runs row
    pending_runs: list[str] = field(default_factory=list)  # the same, but younger than the grace period
    stale_quarantine: int = 0
    index_unindexed: dict[str, int] = field(default_factory=dict)  # embeddings table -> rows outside its index
    fragments: dict[str, int] = field(default_factory=dict)  # table -> data fragments, when due for compaction
    repaired: bool = False
    actions: list[str] = field(default_factory=list)

    @property
    def problems(self) -> int:
        """Rows that should not be there (orphans and stale quarantine)."""
        return sum(self.orphan_embeddings.values()) + sum(self.orphan_results.values()) + self.stale_quarantine

    @property
    def upkeep(self) -> int:
        """Tables whose index or fragments are due for maintenance."""
        return len(self.index_unindexed) + len(self.fragments)

    def summary(self) -> str:
        """One line: clean, or each kind of problem with its count."""
        counted = [
            (sum(self.orphan_embeddings.values()), "{} orphan embeddings"),
            (sum(self.orphan_results.values()), f"{{}} result rows of {len(self.orphan_runs)} unfinished runs"),
            (self.stale_quarantine, "{} stale quarantine rows"),
            (len(self.pending_runs), "{} runs still writing or killed recently (left alone)"),
            (sum(self.index_unindexed.values()), "{} rows outside the ANN index"),
            (len(self.fragments), "{} tables to compact"),
        ]
        parts = [text.format(n) for n, text in counted if n]
        verb = "repaired" if self.repaired else "found"
        return f"{verb}: " + ", ".join(parts) if parts else "clean: nothing to repair"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": self.problems, "upkeep": self.upkeep, "summary": self.summary()}


def check(db: Database, *, grace_s: float = DEFAULT_GRACE_S) -> CheckReport:
    """Find what a killed writer left behind (read-only; see the module docstring)."""
    report = CheckReport()
    _find(db, report, grace_s)
    return report


def repair(db: Database, *, grace_s: float = DEFAULT_GRACE_S, wait_lock: float = 0.0,
           lock_held: bool = False) -> CheckReport:
    """Check, then delete the orphans and stale quarantine rows, fold unindexed rows into the
    ANN index and compact fragmented tables, all under the writer lock (taken here, unless the
    caller says it holds it: ``lock_held=True``). Returns what was found (``repaired=True``,
    ``actions`` listing what was done)."""
    if not lock_held:
        with db.writer_lock(wait=wait_lock, owner="check --repair"):
            return repair(db, grace_s=grace_s, lock_held=True)
    report = CheckReport(repaired=True)
    db.refresh()
    shas_by_table, runs = _find(db, report, grace_s)
    for table, shas in shas_by_table.items():
        n = _delete_in(db, table, "sha256", shas)
        report.actions.append(f"deleted {n} orphan rows from {table}")
    for table in report.orphan_results:
        n = _delete_in(db, table, "run_id", runs)
        report.actions.append(f"deleted {n} rows of unfinished runs from {table}")
    if report.stale_quarantine:
        n = _delete_stale_quarantine(db)
        report.actions.append(f"deleted {n} stale quarantine rows")
    _upkeep(db, report)
    return report


# -- finding ---------------------------------------------------------------------------------


def _find(db: Database, report: CheckReport, grace_s: float) -> tuple[dict[str, list[str]], list[str]]:
    """Fill ``report``; return the orphan sha256s per embeddings table and the orphan run ids."""
    images = _column_set(db, S.IMAGES, "sha256")
    shas_by_table: dict[str, list[str]] = {}
    for table in db.embedding_table_names():
        shas = db.read(table, ["sha256"]).column("sha256")
        orphan = pc.invert(pc.is_in(shas, value_set=images))
        if pc.any(orphan).as_py():
            shas_by_table[table] = pc.unique(shas.filter(orphan)).to_pylist()
            report.orphan_embeddings[table] = int(pc.sum(orphan).as_py())
    runs = _column_set(db, S.RUNS, "run_id")
    orphan_runs: set[str] = set()
    for table in RESULT_TABLES:
        if not db.has_table(table):
            continue
        ids = db.read(table, ["run_id"]).column("run_id")
        counts = pc.value_counts(ids.filter(pc.invert(pc.is_in(ids, value_set=runs))))
        for item in counts.to_pylist():
            run_id, n = item["values"], int(item["counts"])
            if _is_recent(run_id, grace_s):
                if run_id not in report.pending_runs:
                    report.pending_runs.append(run_id)
                continue
            orphan_runs.add(run_id)
            report.orphan_results[table] = report.orphan_results.get(table, 0) + n
    report.orphan_runs = sorted(orphan_runs)
    report.pending_runs.sort()
    report.stale_quarantine = len(_stale_quarantine(db))
    _find_upkeep(db, report)
    return shas_by_table, report.orphan_runs


def _column_set(db: Database, table: str, column: str) -> pa.Array:
    col = db.read(table, [column]).column(column)
    return pc.unique(col.combine_chunks()) if col.num_chunks else pa.array([], col.type)


def _is_recent(run_id: str, grace_s: float) -> bool:
    """Whether the run id's timestamp (``YYYYmmddTHHMMSSZ-…``) is within ``grace_s`` of now."""
    if grace_s <= 0:
        return False
    try:
        started = dt.datetime.strptime(run_id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return False  # not an id analyze made: nothing can still be writing it
    return (utc_now() - started).total_seconds() < grace_s


def _stale_quarantine(db: Database) -> list[tuple[str, str]]:
    """(sha256, path) of quarantine rows whose path a later ingest stored (newer ``sources`` row)."""
    if not db.count(S.QUARANTINE) or not db.count(S.SOURCES):
        return []
    quarantined = db.read(S.QUARANTINE, ["sha256", "path", "seen_at"]).to_pylist()
    paths = sorted({r["path"] for r in quarantined})
    newest: dict[str, Any] = {}
    for i in range(0, len(paths), DELETE_CHUNK):
        for r in db.read(S.SOURCES, ["path", "seen_at"], where=isin("path", paths[i:i + DELETE_CHUNK])).to_pylist():
            if r["seen_at"] is not None and (r["path"] not in newest or r["seen_at"] > newest[r["path"]]):
                newest[r["path"]] = r["seen_at"]
    return [(r["sha256"], r["path"]) for r in quarantined
            if r["path"] in newest and (r["seen_at"] is None or newest[r["path"]] > r["seen_at"])]


def _find_upkeep(db: Database, report: CheckReport) -> None:
    from embedscope.store.index import OPTIMIZE_FRACTION, index_info

    for table in db.table_names():
        try:
            n = len(db.dataset(table).get_fragments())
        except Exception:  # a table whose creation was cut off holds nothing to compact
            continue
        if n > COMPACT_FRAGMENTS:
            report.fragments[table] = n
        if table.startswith(S.EMBEDDINGS_PREFIX):
            info = index_info(db, table)
            if info and info["unindexed_rows"] >= OPTIMIZE_FRACTION * max(info["indexed_rows"], 1):
                report.index_unindexed[table] = info["unindexed_rows"]


# -- repairing -------------------------------------------------------------------------------


def _delete_in(db: Database, table: str, column: str, values: list[str]) -> int:
    deleted = 0
    for i in range(0, len(values), DELETE_CHUNK):
        deleted += db.delete(table, isin(column, values[i:i + DELETE_CHUNK]))
    return deleted


def _delete_stale_quarantine(db: Database) -> int:
    stale = _stale_quarantine(db)
    deleted = 0
    for i in range(0, len(stale), DELETE_CHUNK):
        deleted += db.delete(S.QUARANTINE, either(*(both(eq("sha256", s), eq("path", p))
                                                    for s, p in stale[i:i + DELETE_CHUNK])))
    return deleted


def _upkeep(db: Database, report: CheckReport) -> None:
    from embedscope.store.index import maybe_optimize

    for table in report.index_unindexed:
        model = db.read(table, ["model"]).column("model")[0].as_py()
        report.actions.append(f"index of {table}: {maybe_optimize(db, model)}")
    for table in report.fragments:
        db.table(table).optimize(cleanup_older_than=KEEP_VERSIONS)
        report.actions.append(f"compacted {table} ({report.fragments[table]} fragments)")
    db.refresh()
