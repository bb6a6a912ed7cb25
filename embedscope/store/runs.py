"""One source of runs: which analysis runs exist, the latest one, one by id, the
novelty-only runs scored against a parent, and which model/variant a run is about.

Every caller (SQL's ``images_latest``, analysis jobs, the dashboard, the CLI) asks here, so
"the latest run" has one rule: newest ``created_at``, ties broken by ``run_id``. An unknown id
is an error naming the known ids, never a silent fallback to the latest run.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

from embedscope.errors import ConfigError, NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq

KIND_ANALYZE = "analyze"
KIND_NOVELTY = "novelty"
KIND_ZERO_SHOT = "zero_shot"  # analyze --zero-shot: per-image tags from CLIP text prompts

_EPOCH = dt.datetime.min.replace(tzinfo=dt.timezone.utc)


class UnknownRunError(NotFoundError):
    """A run id that is not in the ``runs`` table."""


@dataclass(frozen=True)
class Run:
    """One row of ``runs`` with its ``params`` parsed."""

    run_id: str
    kind: str
    model: str | None = None
    variant: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    created_at: dt.datetime | None = None
    n_images: int | None = None
    table_version: int | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> "Run":
        try:
            params = json.loads(row.get("params") or "{}")
        except (ValueError, TypeError):
            params = {}
        return cls(row["run_id"], row.get("kind") or "", row.get("model"), row.get("variant"),
                   params if isinstance(params, dict) else {}, row.get("created_at"), row.get("n_images"),
                   row.get("table_version"))

    @property
    def primary_cluster(self) -> str | None:
        return self.params.get("primary_cluster")

    @property
    def primary_projection(self) -> str | None:
        return self.params.get("primary_projection")

    @property
    def primary_dims(self) -> int:
        return int(self.params.get("primary_dims") or 2)

    @property
    def parent_run(self) -> str | None:
        """For a novelty-only run: the analyze run whose model of the data it scored against."""
        return self.params.get("parent_run")

    def sort_key(self) -> tuple[dt.datetime, str]:
        return (self.created_at or _EPOCH, self.run_id)

    def title(self) -> str:
        """A unique, readable label: time, model/variant, size and the full run id."""
        when = self.created_at.strftime("%Y-%m-%d %H:%M:%S") if self.created_at else "?"
        return f"{when} · {self.model or '?'}/{self.variant or '?'} · {self.n_images or 0} images · {self.run_id}"


def list_runs(db: Database, *, kind: str | None = KIND_ANALYZE, model: str | None = None,
              variant: str | None = None) -> list[Run]:
    """Runs matching the filters (``None`` = any), newest first."""
    where = both(eq("kind", kind) if kind else None, eq("model", model) if model else None,
                 eq("variant", variant) if variant else None)
    runs = [Run.from_row(r) for r in db.read(S.RUNS, where=where).to_pylist()]
    return sorted(runs, key=Run.sort_key, reverse=True)


def latest_run(db: Database, *, kind: str | None = KIND_ANALYZE, model: str | None = None,
               variant: str | None = None) -> Run | None:
    """The newest run matching the filters, or None when there is none."""
    runs = list_runs(db, kind=kind, model=model, variant=variant)
    return runs[0] if runs else None


def run_by_id(db: Database, run_id: str) -> Run:
    """The run ``run_id``; :class:`UnknownRunError` naming the known ids when there is none."""
    rows = db.read(S.RUNS, where=eq("run_id", run_id)).to_pylist()
    if rows:
        return Run.from_row(rows[0])
    known = [r.run_id for r in list_runs(db, kind=None)]
    hint = f"known runs: {', '.join(known)}" if known else "there are no runs yet: run `embedscope analyze --db DB`"
    raise UnknownRunError(f"no run {run_id!r} in {db.uri}", hint)


def run_or_latest(db: Database, run_id: str | None, *, kind: str | None = KIND_ANALYZE,
                  model: str | None = None, variant: str | None = None) -> Run | None:
    """``run_by_id`` when an id is given (unknown: an error), else the latest matching run."""
    if run_id:
        return run_by_id(db, run_id)
    return latest_run(db, kind=kind, model=model, variant=variant)


def scoring_runs(db: Database, parent: Run) -> list[Run]:
    """The novelty-only runs scored against ``parent``, oldest first."""
    later = [r for r in list_runs(db, kind=KIND_NOVELTY) if r.parent_run == parent.run_id]
    return sorted(later, key=Run.sort_key)


def overlay_runs(db: Database, parent: Run) -> list[Run]:
    """``parent`` then its novelty-only runs, oldest first: the order in which a later score
    overwrites an earlier one in ``images_latest`` and the results readers."""
    return [parent, *scoring_runs(db, parent)]


def resolve_model_variant(db: Database, model: str | None, variant: str | None) -> tuple[str, str]:
    """The model (the only one, or the one named) and variant ('full' if present, else the only
    one) that an analysis of ``db`` is about; a one-line error naming the choices otherwise."""
    models = db.embedding_models()
    if not models:
        raise NotFoundError(f"no embeddings in {db.uri}", "run `embedscope ingest` or `embedscope ingest-vectors` first")
    if model is None:
        if len(models) > 1:
            raise ConfigError(f"the database has several models: {', '.join(models)}", "pick one with --model NAME")
        model = models[0]
    elif model not in models:
        raise NotFoundError(f"no embeddings for model {model!r}", f"models in this database: {', '.join(models)}")
    variants = sorted({k.split("/", 1)[1] for k in db.embedding_counts() if k.split("/", 1)[0] == model})
    if variant is None:
        if S.VARIANT_FULL in variants or not variants:
            variant = S.VARIANT_FULL
        elif len(variants) == 1:
            variant = variants[0]
        else:
            raise ConfigError(f"model {model} has variants {', '.join(variants)}", "pick one with --variant")
    elif variant not in variants:
        raise NotFoundError(f"no {variant!r} embeddings for model {model}", f"variants present: {', '.join(variants) or 'none'}")
    return model, variant
