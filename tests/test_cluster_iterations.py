"""The k-means / k-medoids iteration recorder behind the Clusters page's teaching animation."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.analysis.iterations import cluster_iterations, sample_rows
from embedscope.errors import ConfigError


def _blobs(seed: int = 1, per: int = 120) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(c, 0.9, size=(per, 2)) for c in [(0, 0), (4, 1), (1, 5), (5, 5)]])


@pytest.mark.parametrize("init", ["k-means++", "random"])
def test_kmeans_frames_never_raise_inertia_and_end_where_sklearn_ends(init):
    from sklearn.cluster import KMeans

    X = _blobs()
    it = cluster_iterations(X, 4, method="kmeans", seed=3, init=init)
    assert it.converged and it.n_frames >= 2
    assert len(it.labels) == len(it.cost) == it.n_frames
    assert all(b <= a + 1e-9 for a, b in zip(it.cost, it.cost[1:])), it.cost
    km = KMeans(4, init=it.centers[0], n_init=1, algorithm="lloyd", max_iter=300, tol=0).fit(X)
    np.testing.assert_array_equal(it.labels[-1], km.labels_)
    np.testing.assert_allclose(it.centers[-1], km.cluster_centers_, atol=1e-9)
    assert it.cost[-1] == pytest.approx(km.inertia_, rel=1e-9)
    # each frame's labels are the assignment to that frame's centres
    for C, lab in zip(it.centers, it.labels):
        np.testing.assert_array_equal(lab, ((X[:, None, :] - C[None]) ** 2).sum(-1).argmin(1))


def test_random_init_is_seeded_and_starts_on_data_points():
    X = _blobs()
    a = cluster_iterations(X, 4, seed=5, init="random")
    b = cluster_iterations(X, 4, seed=5, init="random")
    np.testing.assert_array_equal(a.centers[0], b.centers[0])
    assert any((X == c).all(1).any() for c in a.centers[0])  # random init starts on data points
    assert not np.array_equal(a.centers[0], cluster_iterations(X, 4, seed=6, init="random").centers[0])


def test_kmedoids_medoids_are_data_points_and_cost_never_rises():
    X = _blobs(per=60)
    it = cluster_iterations(X, 4, method="kmedoids", seed=2, init="random")
    assert it.converged and it.medoid_rows is not None and len(it.medoid_rows) == it.n_frames
    for rows, C, lab in zip(it.medoid_rows, it.centers, it.labels):
        np.testing.assert_array_equal(C, X[rows])  # every centre is one of the points
        d = np.sqrt(((X[:, None, :] - C[None]) ** 2).sum(-1))
        np.testing.assert_array_equal(lab, d.argmin(1))
    assert all(b <= a + 1e-9 for a, b in zip(it.cost, it.cost[1:])), it.cost
    # at convergence each medoid minimises the summed distance within its cluster
    D = np.sqrt(((X[:, None, :] - X[None]) ** 2).sum(-1))
    for c, m in enumerate(it.medoid_rows[-1]):
        members = np.flatnonzero(it.labels[-1] == c)
        assert D[m, members].sum() == pytest.approx(D[np.ix_(members, members)].sum(1).min())


def test_iteration_cap_and_bad_input():
    X = np.random.default_rng(0).normal(size=(400, 2))  # no structure: k-means wanders for a while
    it = cluster_iterations(X, 8, seed=0, max_iter=2, init="random")
    assert it.n_frames == 3 and not it.converged
    with pytest.raises(ConfigError):
        cluster_iterations(X, 0)
    with pytest.raises(ConfigError):
        cluster_iterations(X, 3, method="hdbscan")
    with pytest.raises(ConfigError):
        cluster_iterations(np.zeros((0, 2)), 2)
    assert len(sample_rows(10, 20)) == 10
    s = sample_rows(10_000, 3_000, seed=1)
    assert len(s) == 3_000 and np.all(np.diff(s) > 0)
