"""Novelty, surprise and contamination: a fitted "model of the data" and how images are scored.

How it is decided (also in the README):

- The model of the data is the primary clustering's centroids in the embedding space
  (mean of the members' L2-normalised vectors, re-normalised), each cluster's *typical
  distance* (mean cosine distance of its members to its centroid), the mean inter-centroid
  distance, and the fitted rows themselves (the kNN reference set).
- Components, per image (cosine distances):
  ``centroid_score`` = distance to the nearest centroid ÷ that cluster's typical distance
  (the k-means novelty recipe); ``knn_score`` = mean distance to the ``knn_k`` nearest
  reference images (leave-one-out for fitted images); ``glosh_score`` = HDBSCAN's GLOSH
  outlier score (fitted images, and the images an analysis too big to fit whole placed with
  HDBSCAN's ``approximate_predict_scores``; not for images scored later by ``--novelty-only``).
- Each component is turned into a robust z-score with the fitted images' median and
  1.4826 × MAD; ``novelty_score`` = the mean of the available components' z-scores.
  ``is_novel`` = ``novelty_score >= threshold``, where the threshold is ``z_threshold``
  (rule 'zscore', default 3.0) or the ``percentile`` of the fitted images' scores
  (rule 'percentile'). The rule and the resolved threshold are stored with the run.
- ``surprise`` = distance to the nearest centroid ÷ the mean inter-centroid distance.
- A cluster is *contaminated* (judged on its members that are not themselves novel, so that
  outliers glued onto a cluster do not change its size or centroid) when it is small (≤ ``small_fraction`` of the rows) **and** far
  (its nearest other centroid is ≥ ``far_factor`` × the median of that distance over all
  clusters), or — when most of its members have labels — when its labels are mixed (the most
  common label covers < ``purity_min`` of them). Its images get ``is_contaminated`` and the reason.
"""

from __future__ import annotations

import io
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from embedscope.analysis.neighbors import KnnIndex, knn, normalize
from embedscope.errors import ConfigError

COMPONENTS = ("centroid", "knn", "glosh")


@dataclass(frozen=True)
class NoveltyConfig:
    knn_k: int = 10
    rule: str = "zscore"  # 'zscore' | 'percentile'
    z_threshold: float = 3.0
    percentile: float = 99.0
    small_fraction: float = 0.05
    far_factor: float = 1.5
    purity_min: float = 0.5
    min_labelled_fraction: float = 0.8

    def __post_init__(self) -> None:
        if self.rule not in ("zscore", "percentile"):
            raise ConfigError(f"unknown novelty rule {self.rule!r}", "use zscore or percentile")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DataModel:
    """What is needed to score images later without refitting (stored per analyze run)."""

    cluster_ids: np.ndarray  # (C,) int, the primary clustering's labels
    centroids: np.ndarray  # (C, D) float32, L2-normalised
    typical: np.ndarray  # (C,) mean cosine distance of members to centroid
    mean_intercentroid: float
    stats: dict[str, tuple[float, float]]  # component -> (median, scale) on fitted images
    threshold: float
    contaminated: dict[int, str] = field(default_factory=dict)  # cluster id -> reason
    knn_k: int = 10

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        meta = {"mean_intercentroid": self.mean_intercentroid, "stats": self.stats, "threshold": self.threshold,
                "contaminated": {str(k): v for k, v in self.contaminated.items()}, "knn_k": self.knn_k}
        np.savez_compressed(buf, cluster_ids=self.cluster_ids, centroids=self.centroids, typical=self.typical,
                            meta=np.frombuffer(json.dumps(meta).encode(), np.uint8))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes) -> "DataModel":
        z = np.load(io.BytesIO(blob))
        meta = json.loads(z["meta"].tobytes().decode())
        return cls(z["cluster_ids"], z["centroids"], z["typical"], float(meta["mean_intercentroid"]),
                   {k: tuple(v) for k, v in meta["stats"].items()}, float(meta["threshold"]),
                   {int(k): v for k, v in meta["contaminated"].items()}, int(meta["knn_k"]))


@dataclass
class Scores:
    """Per-image results, rows in the order of the input."""

    cluster: np.ndarray  # nearest centroid's cluster id
    centroid_score: np.ndarray
    knn_score: np.ndarray
    glosh_score: np.ndarray | None
    surprise: np.ndarray
    novelty_score: np.ndarray
    is_novel: np.ndarray
    is_contaminated: np.ndarray
    contamination_reason: list[str | None]
    novelty_reason: list[str | None]


def _robust(v: np.ndarray) -> tuple[float, float]:
    med = float(np.median(v))
    mad = float(np.median(np.abs(v - med))) * 1.4826
    if mad <= 1e-9:
        mad = float(np.std(v)) or 1e-6
    return med, mad


def centroids_of(X: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(cluster ids, normalised centroids, typical distances) of the non-noise clusters."""
    ids = np.array(sorted(int(c) for c in np.unique(labels) if c >= 0), np.int64)
    if len(ids) == 0:  # everything is noise: one centroid for all
        ids, labels = np.array([0]), np.zeros(len(X), np.int64)
    cents = normalize(np.stack([X[labels == c].mean(0) for c in ids]))
    typical = np.array([float(np.mean(1.0 - X[labels == c] @ cents[i])) for i, c in enumerate(ids)], np.float32)
    return ids, cents, typical


def _nearest(X: np.ndarray, model: DataModel) -> tuple[np.ndarray, np.ndarray]:
    sims = X @ model.centroids.T
    j = np.argmax(sims, axis=1)
    return j, 1.0 - sims[np.arange(len(X)), j]


def _components(X: np.ndarray, model: DataModel, knn_dist: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    j, d = _nearest(X, model)
    typ = np.maximum(model.typical[j], max(float(np.median(model.typical)), 1e-6) * 0.1)
    comps = {"centroid": (d / typ).astype(np.float32), "knn": knn_dist.mean(1).astype(np.float32)}
    surprise = (d / max(model.mean_intercentroid, 1e-6)).astype(np.float32)
    return j, comps, surprise


def contamination(X: np.ndarray, labels: np.ndarray, ids: np.ndarray, cents: np.ndarray,
                  truth: list[str | None] | None, cfg: NoveltyConfig) -> dict[int, str]:
    """``{cluster id: reason}`` for the clusters that do not belong (see module docstring).
    Rows labelled -1 (noise, or left out) count towards N but belong to no cluster."""
    n = len(X)
    out: dict[int, str] = {}
    if len(ids) >= 2:
        D = 1.0 - cents @ cents.T
        np.fill_diagonal(D, np.inf)
        nearest_other = D.min(1)
        med = float(np.median(nearest_other))
        for i, c in enumerate(ids):
            size = int((labels == c).sum())
            small = size <= cfg.small_fraction * n
            far = nearest_other[i] >= cfg.far_factor * med
            if small and far:
                out[int(c)] = (f"small and far: {size} images ({size / n:.1%}), nearest other cluster at cosine "
                               f"distance {nearest_other[i]:.3f} vs median {med:.3f}")
    if truth is not None:
        for c in ids:
            members = np.nonzero(labels == c)[0]
            labs = [truth[i] for i in members if truth[i]]
            if len(members) < 5 or len(labs) < cfg.min_labelled_fraction * len(members):
                continue
            values, counts = np.unique(np.array(labs, dtype=object), return_counts=True)
            purity = counts.max() / len(labs)
            if purity < cfg.purity_min:
                reason = f"mixed labels: most common {values[counts.argmax()]!r} is {purity:.0%} of {len(labs)}"
                out[int(c)] = f"{out[int(c)]}; {reason}" if int(c) in out else reason
    return out


def fit_model(X: np.ndarray, labels: np.ndarray, cfg: NoveltyConfig, *, glosh: np.ndarray | None = None,
              truth: list[str | None] | None = None, neighbors_dist: np.ndarray | None = None) -> tuple[DataModel, Scores]:
    """Fit the model of the data on the rows of ``X`` (L2-normalised) clustered as ``labels``,
    and score those rows. ``neighbors_dist`` (leave-one-out kNN distances) is computed if absent."""
    X = normalize(X)
    ids, cents, typical = centroids_of(X, labels)
    if len(ids) > 1:
        D = 1.0 - cents @ cents.T
        mean_ic = float(D[np.triu_indices(len(ids), 1)].mean())
    else:
        mean_ic = float(np.mean(typical)) or 1.0
    if neighbors_dist is None:
        neighbors_dist = knn(X, X, cfg.knn_k, exclude_self=True).dist
    neighbors_dist = neighbors_dist[:, : cfg.knn_k]
    model = DataModel(ids, cents, typical, mean_ic, {}, 0.0, knn_k=cfg.knn_k)
    j, comps, surprise = _components(X, model, neighbors_dist)
    if glosh is not None:
        comps["glosh"] = np.asarray(glosh, np.float32)
    model.stats = {name: _robust(v) for name, v in comps.items()}
    score = _combine(comps, model.stats)
    model.threshold = cfg.z_threshold if cfg.rule == "zscore" else float(np.percentile(score, cfg.percentile))
    # contamination is judged on the members that are not individually novel: outliers that a
    # clusterer glued onto a cluster neither hide a small far cluster nor make a big one small
    clean = np.where(score >= model.threshold, -1, labels)
    if (clean >= 0).any():
        cids, ccents, _ = centroids_of(X, clean)
        model.contaminated = contamination(X, clean, cids, ccents, truth, cfg)
    # fitted images keep their own cluster (noise stays -1: never contaminated by proximity)
    return model, _scores(model, np.asarray(labels, np.int64), comps, surprise, score)


def score_new(X: np.ndarray, reference: np.ndarray | KnnIndex, model: DataModel, *,
              glosh: np.ndarray | None = None, batch_size: int | None = None) -> Scores:
    """Score new rows against a fitted model without refitting: nearest centroid, kNN against
    the ``reference`` rows (the fitted images; pass a prepared :class:`KnnIndex` when scoring a
    stream of batches), and GLOSH only when ``glosh`` is given (HDBSCAN's
    ``approximate_predict_scores`` for these rows). With ``batch_size`` the rows are scored
    that many at a time (memory bounded by the batch and the reference; same numbers)."""
    index = reference if isinstance(reference, KnnIndex) else KnnIndex(reference)
    if batch_size and len(X) > batch_size:
        parts = [score_new(X[i:i + batch_size], index, model,
                           glosh=None if glosh is None else glosh[i:i + batch_size])
                 for i in range(0, len(X), batch_size)]
        return concat_scores(parts)
    X = normalize(X)
    return score_with_neighbors(X, index.search(X, model.knn_k).dist, model, glosh=glosh)


def score_with_neighbors(X: np.ndarray, knn_dist: np.ndarray, model: DataModel, *, cluster: np.ndarray | None = None,
                         glosh: np.ndarray | None = None) -> Scores:
    """:func:`score_new` when the rows' distances to their nearest reference rows are already
    known (``knn_dist``, n × ≥ knn_k, ascending). ``cluster`` (default: the nearest centroid's)
    is the cluster each row is reported in and judged contaminated by."""
    X = normalize(X)
    j, comps, surprise = _components(X, model, knn_dist[:, : model.knn_k])
    if glosh is not None and "glosh" in model.stats:
        comps["glosh"] = np.asarray(glosh, np.float32)
    score = _combine(comps, model.stats)
    return _scores(model, model.cluster_ids[j] if cluster is None else cluster, comps, surprise, score)


def concat_scores(parts: list[Scores]) -> Scores:
    """The scores of consecutive batches as one :class:`Scores`."""
    def cat(name: str) -> np.ndarray | None:
        vals = [getattr(p, name) for p in parts]
        return None if any(v is None for v in vals) else np.concatenate(vals)

    lists = {name: [x for p in parts for x in getattr(p, name)] for name in ("contamination_reason", "novelty_reason")}
    return Scores(cat("cluster"), cat("centroid_score"), cat("knn_score"), cat("glosh_score"), cat("surprise"),
                  cat("novelty_score"), cat("is_novel"), cat("is_contaminated"), **lists)


def _combine(comps: dict[str, np.ndarray], stats: dict[str, tuple[float, float]]) -> np.ndarray:
    zs = [(v - stats[name][0]) / stats[name][1] for name, v in comps.items() if name in stats]
    return np.mean(np.stack(zs), axis=0).astype(np.float32)


def _scores(model: DataModel, cluster: np.ndarray, comps: dict[str, np.ndarray], surprise: np.ndarray,
            score: np.ndarray) -> Scores:
    is_novel = score >= model.threshold
    reasons: list[str | None] = []
    for i in range(len(score)):
        if not is_novel[i]:
            reasons.append(None)
            continue
        parts = [f"{name} z={(comps[name][i] - model.stats[name][0]) / model.stats[name][1]:.1f}"
                 for name in COMPONENTS if name in comps and name in model.stats]
        reasons.append(f"novelty {score[i]:.2f} >= {model.threshold:.2f} ({', '.join(parts)})")
    contaminated = np.array([int(c) in model.contaminated for c in cluster], bool)
    creasons = [model.contaminated.get(int(c)) for c in cluster]
    creasons = [f"cluster {int(c)}: {r}" if r else None for c, r in zip(cluster, creasons)]
    return Scores(np.asarray(cluster, np.int64), comps["centroid"], comps["knn"], comps.get("glosh"), surprise,
                  score, is_novel, contaminated, creasons, reasons)
