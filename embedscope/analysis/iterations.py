"""k-means and k-medoids one iteration at a time, for the dashboard's teaching animation.

:func:`cluster_iterations` ``(X, k, method=, seed=, max_iter=) -> Iterations`` runs the plain
textbook algorithms and records every step:

- **k-means** (Lloyd): seeded init (k-means++ by scikit-learn's ``kmeans_plusplus``, or ``k``
  random rows), then
  alternately assign every point to its nearest centroid and move each centroid to the mean
  of its points; stops when no assignment changes (or after ``max_iter`` updates). The
  result equals scikit-learn's ``KMeans(init=<same centres>, n_init=1, algorithm="lloyd")``.
- **k-medoids** (the alternating "Voronoi iteration" of Park & Jun): the same seeded init
  picks ``k`` data points; assign to the nearest medoid, then make each
  cluster's medoid the member with the smallest summed distance to the other members.
  Medoids are always data points. (The analysis job uses FasterPAM, which swaps medoids
  globally and usually finds a lower cost; this one is easier to watch.)

Frame ``i`` holds the centres after ``i`` updates and the assignment to them, with its cost
(k-means: sum of squared distances, "inertia"; k-medoids: sum of distances), which never
increases. Pure numpy on arrays; nothing is read or written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from embedscope.errors import ConfigError

ITERATION_METHODS = ("kmeans", "kmedoids")


@dataclass
class Iterations:
    """Every step of one run: ``centers[i]`` (k, d), ``labels[i]`` (n,), ``cost[i]``."""

    method: str
    centers: list[np.ndarray]
    labels: list[np.ndarray]
    cost: list[float]
    converged: bool  # False: stopped at max_iter with assignments still changing
    medoid_rows: list[np.ndarray] | None = None  # k-medoids: row index of each medoid per frame

    @property
    def n_frames(self) -> int:
        return len(self.centers)


def _sq_dist(X: np.ndarray, C: np.ndarray) -> np.ndarray:
    d = (X * X).sum(1)[:, None] - 2.0 * X @ C.T + (C * C).sum(1)[None, :]
    return np.maximum(d, 0.0)


def cluster_iterations(X: np.ndarray, k: int, *, method: str = "kmeans", seed: int = 0,
                       max_iter: int = 30, init: str = "k-means++") -> Iterations:
    """Run ``method`` on the rows of ``X`` from a seeded init, recording each step.

    ``init``: ``"k-means++"`` (spread-out seeds, few iterations) or ``"random"`` (``k``
    distinct rows drawn with ``seed``: more iterations to watch).

    >>> it = cluster_iterations(np.random.default_rng(0).normal(size=(200, 2)), 3)
    >>> it.cost == sorted(it.cost, reverse=True)
    True
    """
    from sklearn.cluster import kmeans_plusplus

    if method not in ITERATION_METHODS:
        raise ConfigError(f"unknown iterative clustering {method!r}", f"use one of {', '.join(ITERATION_METHODS)}")
    X = np.asarray(X, np.float64)
    n = X.shape[0]
    if n == 0:
        raise ConfigError("no points to cluster", "pick a projection with points")
    k = int(k)
    if not 1 <= k <= n:
        raise ConfigError(f"k must be between 1 and the number of points ({n}), got {k}")
    if init == "k-means++":
        centers, rows = kmeans_plusplus(X, k, random_state=seed)
    elif init == "random":
        rows = np.random.default_rng(seed).choice(n, k, replace=False)
        centers = X[rows]
    else:
        raise ConfigError(f"unknown init {init!r}", "use k-means++ or random")
    if method == "kmeans":
        return _lloyd(X, centers, max_iter)
    return _voronoi_medoids(X, np.asarray(rows, np.int64), max_iter)


def _lloyd(X: np.ndarray, centers: np.ndarray, max_iter: int) -> Iterations:
    C = np.asarray(centers, np.float64).copy()
    d = _sq_dist(X, C)
    labels = d.argmin(1)
    out = Iterations("kmeans", [C.copy()], [labels.copy()], [float(d[np.arange(len(X)), labels].sum())], False)
    for _ in range(max_iter):
        for c in range(len(C)):
            members = labels == c
            if members.any():  # an empty cluster keeps its centre
                C[c] = X[members].mean(0)
        d = _sq_dist(X, C)
        new = d.argmin(1)
        out.centers.append(C.copy())
        out.labels.append(new.copy())
        out.cost.append(float(d[np.arange(len(X)), new].sum()))
        if np.array_equal(new, labels):
            out.converged = True
            break
        labels = new
    return out


def _voronoi_medoids(X: np.ndarray, rows: np.ndarray, max_iter: int) -> Iterations:
    D = np.sqrt(_sq_dist(X, X))

    def step(medoids: np.ndarray) -> tuple[np.ndarray, float]:
        lab = D[:, medoids].argmin(1)
        return lab, float(D[np.arange(len(X)), medoids[lab]].sum())

    medoids = rows.copy()
    labels, cost = step(medoids)
    out = Iterations("kmedoids", [X[medoids].copy()], [labels.copy()], [cost], False, [medoids.copy()])
    for _ in range(max_iter):
        new_medoids = medoids.copy()
        for c in range(len(medoids)):
            members = np.flatnonzero(labels == c)
            if len(members):
                within = D[np.ix_(members, members)].sum(1)
                best = members[within.argmin()]
                # keep the current medoid on ties, so the run cannot cycle between equals
                if within.min() < D[medoids[c], members].sum():
                    new_medoids[c] = best
        new_labels, new_cost = step(new_medoids)
        if new_cost > cost:  # cannot happen in exact arithmetic; guard against rounding
            new_medoids, new_labels, new_cost = medoids, labels, cost
        out.centers.append(X[new_medoids].copy())
        out.labels.append(new_labels.copy())
        out.cost.append(new_cost)
        out.medoid_rows.append(new_medoids.copy())
        if np.array_equal(new_medoids, medoids):
            out.converged = True
            break
        medoids, labels, cost = new_medoids, new_labels, new_cost
    return out


def sample_rows(n: int, size: int, seed: int = 0) -> np.ndarray:
    """Sorted row indices of a seeded sample of ``size`` of ``n`` rows (all rows if fewer)."""
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
