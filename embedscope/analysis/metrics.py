"""Cluster-quality metrics, pure functions of arrays.

- internal: silhouette (cosine on the embedding space, Euclidean on a projection; on a seeded
  sample of ``silhouette_sample`` rows), Davies-Bouldin and Calinski-Harabasz (all rows).
  Noise points (label -1) are left out; fewer than two clusters gives no value.
- external, when labels exist: ARI and NMI of the clustering against the labels (noise counts
  as one more cluster), and the embedding's leave-one-out kNN label accuracy (k = 5, 10;
  majority vote, ties to the nearest neighbour's label).
"""

from __future__ import annotations

from collections import Counter

import numpy as np


def internal_metrics(X: np.ndarray, labels: np.ndarray, *, metric: str = "euclidean",
                     silhouette_sample: int = 5_000, seed: int = 0) -> dict[str, float]:
    """``{"silhouette", "davies_bouldin", "calinski_harabasz"}`` (missing if undefined)."""
    from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score

    keep = labels >= 0
    Xk, lk = X[keep], labels[keep]
    n_clusters = len(np.unique(lk))
    if n_clusters < 2 or n_clusters >= len(lk):
        return {}
    out: dict[str, float] = {}
    rng = np.random.default_rng(seed)
    idx = np.arange(len(lk)) if len(lk) <= silhouette_sample else rng.choice(len(lk), silhouette_sample, replace=False)
    if len(np.unique(lk[idx])) > 1:
        out["silhouette"] = float(silhouette_score(Xk[idx], lk[idx], metric=metric))
    out["davies_bouldin"] = float(davies_bouldin_score(Xk, lk))
    out["calinski_harabasz"] = float(calinski_harabasz_score(Xk, lk))
    return out


def external_metrics(labels: np.ndarray, truth: list[str | None]) -> dict[str, float]:
    """ARI and NMI of ``labels`` against ``truth`` over the rows that have a truth label."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    has = np.array([t is not None and t != "" for t in truth], bool)
    if has.sum() < 2 or len({t for t in truth if t}) < 2:
        return {}
    t = np.array([x for x in truth if x], dtype=object)
    lab = labels[has]
    return {"ari": float(adjusted_rand_score(t, lab)), "nmi": float(normalized_mutual_info_score(t, lab))}


def knn_accuracy(neighbor_idx: np.ndarray, truth: list[str | None], ks: tuple[int, ...] = (5, 10)) -> dict[str, float]:
    """Leave-one-out kNN label accuracy. ``neighbor_idx`` must exclude each row itself."""
    has = [i for i, t in enumerate(truth) if t]
    if len(has) < 2 or len({truth[i] for i in has}) < 2:
        return {}
    out: dict[str, float] = {}
    for k in ks:
        if neighbor_idx.shape[1] < k:
            continue
        correct = total = 0
        for i in has:
            votes = [truth[j] for j in neighbor_idx[i, :k] if truth[j]]
            if not votes:
                continue
            counts = Counter(votes)
            top = max(counts.values())
            winners = {lab for lab, c in counts.items() if c == top}
            pred = next(v for v in votes if v in winners)  # ties: the nearest one's label
            correct += pred == truth[i]
            total += 1
        if total:
            out[f"knn_acc_{k}"] = correct / total
    return out
