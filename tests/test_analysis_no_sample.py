"""Analysis of every row without sampling (issue 20, item 3): one kNN graph shared by every UMAP
and novelty, and an auto-k range that grows with N and says when its best k is at the edge."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embedscope.analysis.clustering import edge_note, k_grid, k_refinement
from embedscope.analysis.neighbors import graph_knn, graph_recall, knn
from embedscope.analysis.projection import ProjectionConfig, fit_projection, umap_graph
from embedscope.analysis.recording import Recorder, Timer
from embedscope.analysis.synthetic import make_blobs
from embedscope.analysis.backend import resolve_backend
from embedscope.analysis.fitting import fit_methods
from embedscope.analysis.params import AnalysisParams


def test_k_range_grows_with_n_and_is_capped():
    assert k_grid(500)[-1] == 15  # small N: at least 2..15
    assert k_grid(10_000)[-1] == 50  # sqrt(N)/2
    assert k_grid(1_000_000)[-1] == 60  # capped
    assert k_grid(10_000, k_max=8) == list(range(2, 9))
    assert k_grid(6) == [2, 3, 4, 5]  # never above N - 1
    grid = k_grid(10_000)
    assert len(grid) <= 12 and grid == sorted(set(grid))
    finer = k_refinement(grid, grid[6])
    assert finer and all(grid[5] < k < grid[7] and k not in grid for k in finer)


def test_edge_note_only_at_the_ends():
    assert "top of the range" in edge_note([2, 5, 10], 10, 1000)
    assert edge_note([2, 5, 10], 5, 1000) is None
    assert edge_note([2, 5, 10], 2, 1000) is None  # k = 2 is a real answer, not an edge of choice
    assert "bottom" in edge_note([4, 5, 10], 4, 1000)


def _fit(X, truth, **kw):
    params = AnalysisParams(**kw)
    rec = Recorder("t", Timer())
    return fit_methods(X, [f"c{t}" for t in truth], True, params, resolve_backend("cpu"), rec, placeable=False), rec


@pytest.mark.slow
def test_auto_k_finds_30_planted_clusters_and_states_an_edge():
    syn = make_blobs(n_per_blob=130, n_blobs=30, dim=32, n_planted=0, n_outliers=0, n_dups=0, seed=2, spread=0.3)
    fit, rec = _fit(syn.X, syn.truth, project=(), cluster=("kmeans",))
    info = rec.methods_info["k_auto"]
    assert info["range"][1] >= 30 and "note" not in info
    assert adjusted_rand_score(syn.truth, fit.labels_by["kmeans"]) >= 0.9, info
    _, rec = _fit(syn.X, syn.truth, project=(), cluster=("kmeans",), k_max=10)
    assert "top of the range" in rec.methods_info["k_auto"]["note"]


@pytest.mark.slow
def test_umap_on_the_shared_graph_separates_what_its_own_search_does():
    syn = make_blobs(n_per_blob=1000, n_blobs=5, dim=64, n_planted=0, n_outliers=0, n_dups=0, seed=4)
    nb = knn(syn.X, syn.X, 14, exclude_self=True)
    cfg = ProjectionConfig("umap", 2, seed=0)
    shared = fit_projection(syn.X, cfg, knn=umap_graph(nb.idx, nb.dist, 15))
    assert "knn_graph" in shared.info and shared.coords.shape == (len(syn.X), 2)
    from sklearn.cluster import KMeans

    lab = KMeans(5, n_init=3, random_state=0).fit_predict(shared.coords)
    assert adjusted_rand_score(syn.truth, lab) >= 0.95
    with pytest.raises(Exception, match="precomputed kNN graph"):
        shared.transform(syn.X[:3])


def test_hnsw_graph_recall_against_brute_force_and_its_stated_recall():
    syn = make_blobs(n_per_blob=300, n_blobs=8, dim=48, n_planted=0, n_outliers=50, n_dups=0, seed=5)
    k = 15
    nb, info = graph_knn(syn.X, k, seed=0)
    exact = knn(syn.X, syn.X, k, exclude_self=True)
    assert nb.idx.shape == exact.idx.shape and nb.approximate
    assert not (nb.idx == np.arange(len(syn.X))[:, None]).any()  # leave-one-out: never the row itself
    found = np.mean([len(set(a) & set(b)) / k for a, b in zip(nb.idx.tolist(), exact.idx.tolist())])
    assert found >= 0.95
    assert abs(info["recall_at_k"] - found) <= 0.05 and info["recall_rows"] == 500
    # the distances are the true cosine distances of the listed rows, nearest first
    assert np.allclose(nb.dist, 1.0 - np.einsum("nd,nkd->nk", syn.X, syn.X[nb.idx]), atol=1e-4)
    assert (np.diff(nb.dist, axis=1) >= -1e-6).all()
    # the stated recall is brute force's own answer: a perfect graph scores 1.0
    assert graph_recall(syn.X, exact)["recall_at_k"] == 1.0


def test_an_all_rows_fit_above_the_exact_max_uses_the_graph_and_fits_hdbscan_on_every_row():
    syn = make_blobs(n_per_blob=120, n_blobs=6, dim=32, n_planted=0, n_outliers=20, n_dups=0, seed=6)
    n = len(syn.X)
    fit, rec = _fit(syn.X, syn.truth, project=("pca",), cluster=("hdbscan",), hdbscan_space="pca",
                    knn_exact_max=200, hdbscan_max_fit=100, fit_sample=0)
    info = rec.methods_info
    assert "hnswlib" in info["knn"]["how"] and info["knn"]["recall_at_k"] >= 0.9
    assert info["hdbscan"]["n_fit"] == n and "sampled" not in info["hdbscan"]  # no inner cap in an all-rows run
    assert adjusted_rand_score(syn.truth, fit.labels_by["hdbscan"]) >= 0.9
    _, rec = _fit(syn.X, syn.truth, project=("pca",), cluster=("hdbscan",), hdbscan_space="pca", fit_sample=0)
    assert rec.methods_info["knn"]["how"] == "exact (brute force)"  # below knn_exact_max


def test_umap_above_the_reproducible_max_runs_unseeded_and_says_so():
    syn = make_blobs(n_per_blob=1100, n_blobs=4, dim=16, n_planted=0, n_outliers=0, n_dups=0, seed=7)
    nb = knn(syn.X, syn.X, 14, exclude_self=True)
    graph = umap_graph(nb.idx, nb.dist, 15)
    res = fit_projection(syn.X, ProjectionConfig("umap", 2, parallel=True, n_epochs=30), knn=graph)
    assert res.coords.shape == (len(syn.X), 2) and "differs run to run" in res.info["reproducible"]
    assert res.info["n_epochs"] == 30
    seeded = fit_projection(syn.X, ProjectionConfig("umap", 2, n_epochs=30), knn=graph)
    assert "reproducible" not in seeded.info
