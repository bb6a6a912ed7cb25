"""The rows an analysis run writes: ``clusters``, ``projections``, ``flags``, ``metrics``,
``run_models`` and, last, ``runs``."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from embedscope.analysis.fitting import MODEL_FORMAT, Fit
from embedscope.analysis.novelty import DataModel, Scores
from embedscope.analysis.recording import Recorder
from embedscope.store import schema as S
from embedscope.store.db import Database, utc_now


def projection_rows(run_id: str, sha: list[str], method: str, dims: int, coords: np.ndarray) -> pa.Table:
    """``projections`` rows: ``coords`` (rows × dims) of ``sha`` in one projection."""
    n = len(sha)
    z = coords[:, 2] if dims >= 3 else None
    return pa.table({
        "run_id": [run_id] * n, "sha256": sha, "method": [method] * n, "dims": pa.array([dims] * n, pa.int32()),
        "x": pa.array(coords[:, 0], pa.float32()), "y": pa.array(coords[:, 1] if dims >= 2 else np.zeros(n), pa.float32()),
        "z": pa.array(z, pa.float32()) if z is not None else pa.nulls(n, pa.float32()),
    })


def flag_rows(run_id: str, sha: list[str], s: Scores, in_fit: bool, dup: np.ndarray | None,
               phash_group: np.ndarray | None) -> pa.Table:
    """``flags`` rows from novelty scores and group ids (a negative group id = in no group)."""
    n = len(sha)

    def group(g: np.ndarray | None) -> pa.Array:
        if g is None:
            return pa.nulls(n, pa.int64())
        return pa.array(g, pa.int64(), mask=g < 0)

    return pa.table({
        "run_id": [run_id] * n, "sha256": sha,
        "novelty_score": pa.array(s.novelty_score, pa.float32()), "is_novel": pa.array(s.is_novel, pa.bool_()),
        "surprise": pa.array(s.surprise, pa.float32()), "centroid_score": pa.array(s.centroid_score, pa.float32()),
        "knn_score": pa.array(s.knn_score, pa.float32()),
        "glosh_score": pa.array(s.glosh_score, pa.float32()) if s.glosh_score is not None else pa.nulls(n, pa.float32()),
        "novelty_reason": pa.array(s.novelty_reason, pa.string()),
        "is_contaminated": pa.array(s.is_contaminated, pa.bool_()),
        "contamination_reason": pa.array(s.contamination_reason, pa.string()),
        "dup_group": group(dup), "phash_group": group(phash_group),
        "in_fit": pa.array([in_fit] * n, pa.bool_()), "cluster": pa.array(s.cluster, pa.int32()),
    })


def write_run(db: Database, run_id: str, kind: str, model: str, variant: str, params: dict[str, Any],
               version: int, n: int) -> None:
    """The ``runs`` row: written last, so a run that is listed is complete."""
    db.upsert(S.RUNS, pa.table({
        "run_id": [run_id], "kind": [kind], "model": [model], "variant": [variant],
        "params": [json.dumps(params, default=_json_default)],
        "created_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC")),
        "table_version": pa.array([version], pa.int64()), "n_images": pa.array([n], pa.int64()),
    }))


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (tuple, set)):
        return list(o)
    return str(o)


def cluster_rows(run_id: str, sha: list[str], method: str, labels: np.ndarray,
                 probability: np.ndarray | None) -> pa.Table:
    """``clusters`` rows of one method (``probability`` None: null)."""
    n = len(sha)
    return pa.table({
        "run_id": [run_id] * n, "sha256": sha, "method": [method] * n, "cluster": pa.array(labels, pa.int32()),
        "probability": pa.array(probability, pa.float32()) if probability is not None else pa.nulls(n, pa.float32()),
    })


def fitted_cluster_rows(run_id: str, sha_fit: list[str], fit: Fit) -> pa.Table:
    """``clusters`` rows of the fit rows, every method (probability 1 where a method has none)."""
    ones = np.ones(len(sha_fit), np.float32)
    rows = []
    for method, labels in fit.labels_by.items():
        prob = fit.prob_by[method]
        rows.append(cluster_rows(run_id, sha_fit, method, labels, prob if prob is not None else ones))
    return pa.concat_tables(rows)


def write_metrics_and_model(db: Database, rec: Recorder, dmodel: DataModel) -> None:
    """The run's ``metrics`` rows and its fitted model of the data (``run_models``)."""
    db.upsert(S.METRICS, pa.Table.from_pylist(rec.metric_rows, schema=S.METRICS_SCHEMA))
    db.upsert(S.RUN_MODELS, pa.table({"run_id": [rec.run_id], "format": [MODEL_FORMAT], "blob": [dmodel.to_bytes()],
                                      "created_at": pa.array([utc_now()], pa.timestamp("us", tz="UTC"))}))
