"""The pure analysis methods, on small arrays (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from embedscope.analysis.clustering import (
    ClusterConfig, ClusterMethod, best_k, cluster_method, cluster_method_names, fit_clusters, register_method, sweep_k,
)
from embedscope.analysis.duplicates import embedding_pairs, groups_from_pairs, phash_pairs
from embedscope.analysis.metrics import external_metrics, internal_metrics, knn_accuracy
from embedscope.analysis.neighbors import knn, normalize
from embedscope.analysis.novelty import DataModel, NoveltyConfig, fit_model, score_new
from embedscope.analysis.projection import ProjectionConfig, fit_projection, pca, place_by_neighbors
from embedscope.analysis.synthetic import make_blobs, more_points
from embedscope.errors import ConfigError


@pytest.fixture(scope="module")
def syn():
    return make_blobs(n_per_blob=60, n_blobs=4, n_planted=12, n_outliers=12, n_dups=4, seed=3)


def test_knn_matches_brute_force_and_the_approximate_search_agrees():
    rng = np.random.default_rng(0)
    X = normalize(rng.normal(size=(300, 96)))
    nb = knn(X, X, 5, exclude_self=True, chunk=64)
    D = 1 - X @ X.T
    np.fill_diagonal(D, np.inf)
    want = np.argsort(D, axis=1)[:, :5]
    assert (nb.idx == want).all()
    assert np.allclose(nb.dist, np.take_along_axis(D, want, 1), atol=1e-5)
    approx = knn(X, X, 5, exclude_self=True, search_dims=32)
    assert approx.approximate
    assert np.allclose(approx.dist[:, 0], nb.dist[:, 0], atol=1e-5) or (approx.idx[:, 0] == want[:, 0]).mean() > 0.8
    assert (approx.dist >= nb.dist[:, :1] - 1e-5).all()  # exact distances: never better than the true nearest


@pytest.mark.parametrize("method,space", [("kmeans", "embedding"), ("agglomerative", "embedding"),
                                          ("kmedoids", "embedding"), ("hdbscan", "pca"), ("dbscan", "pca")])
def test_clusterers_recover_blobs(syn, method, space):
    X = syn.X if space == "embedding" else pca(syn.X, 10)
    res = fit_clusters(X, ClusterConfig(method, k=5, seed=0))
    keep = syn.truth >= 0
    assert adjusted_rand_score(syn.truth[keep], res.labels[keep]) >= 0.9
    if method == "hdbscan":
        assert res.probabilities is not None and res.outlier_scores is not None
    if method == "agglomerative":
        Z = np.asarray(res.dendrogram["linkage"])
        assert Z.shape == (len(res.dendrogram["rows"]) - 1, 4)


def test_sampled_fits_say_so_and_still_label_every_row(syn):
    res = fit_clusters(syn.X, ClusterConfig("kmedoids", k=5, max_fit=100))
    assert "sampled" in res.info and len(res.labels) == len(syn.X)
    keep = syn.truth >= 0
    assert adjusted_rand_score(syn.truth[keep], res.labels[keep]) >= 0.9


def test_hdbscan_on_a_sample_predicts_the_rest(syn):
    res = fit_clusters(pca(syn.X, 10), ClusterConfig("hdbscan", hdbscan_max_fit=150))
    assert "sampled" in res.info and len(res.labels) == len(syn.X) and len(res.outlier_scores) == len(syn.X)
    keep = syn.truth >= 0
    assert adjusted_rand_score(syn.truth[keep], res.labels[keep]) >= 0.9


def test_k_sweep_picks_the_true_k():
    plain = make_blobs(n_per_blob=60, n_blobs=4, n_planted=0, n_outliers=0, n_dups=0, seed=3)
    sweep = sweep_k(plain.X, list(range(2, 9)))
    assert best_k(sweep) == 4
    inertia = [s["inertia"] for s in sweep]
    assert inertia[0] > inertia[-1]


def test_unknown_methods_are_refused():
    with pytest.raises(ConfigError, match="unknown clustering") as err:
        ClusterConfig("spectral")
    assert "hdbscan,kmeans" in err.value.hint  # names the registered methods
    with pytest.raises(ConfigError, match="unknown projection"):
        ProjectionConfig("isomap")


def test_projections_shapes_and_tsne_on_a_small_set(syn):
    Y = fit_projection(syn.X[:120], ProjectionConfig("tsne", 2, perplexity=10)).coords
    assert Y.shape == (120, 2) and np.isfinite(Y).all()
    proj = fit_projection(syn.X, ProjectionConfig("pca", 3))
    assert proj.coords.shape == (len(syn.X), 3)
    # a point placed by its neighbours lands among them
    nb = knn(syn.X[:5], syn.X[5:], 5)
    placed = place_by_neighbors(nb.idx, nb.dist, proj.coords[5:])
    assert np.linalg.norm(placed - proj.coords[:5], axis=1).max() < np.ptp(proj.coords, axis=0).max() / 2


def test_metrics_internal_external_and_knn_accuracy(syn):
    labels = syn.truth.copy()
    inner = internal_metrics(syn.X, labels, metric="cosine")
    assert inner["silhouette"] > 0.3 and inner["davies_bouldin"] > 0 and inner["calinski_harabasz"] > 0
    shuffled = internal_metrics(syn.X, np.random.default_rng(0).permutation(labels), metric="cosine")
    assert shuffled["silhouette"] < inner["silhouette"]
    ext = external_metrics(labels, syn.labels)
    assert ext["ari"] > 0.99 and ext["nmi"] > 0.99
    nb = knn(syn.X, syn.X, 10, exclude_self=True)
    acc = knn_accuracy(nb.idx, syn.labels)
    assert acc["knn_acc_5"] > 0.9 and set(acc) == {"knn_acc_5", "knn_acc_10"}
    assert knn_accuracy(nb.idx, [None] * len(syn.X)) == {}


def test_duplicate_groups_from_embeddings_and_phash():
    assert groups_from_pairs(5, np.array([[0, 3], [3, 4]])).tolist() == [0, -1, -1, 0, 0]
    idx = np.array([[1], [0], [0]])
    dist = np.array([[0.01], [0.01], [0.5]], np.float32)
    assert embedding_pairs(idx, dist, 0.03).tolist() == [[0, 1]]
    base = np.int64(0x0F0F_1234_5678_9ABC)
    hashes = np.array([base, base ^ 0b111, ~base, base ^ (0xFF << 8)], np.int64)  # 0~1 (3 bits), 3 is 8 bits off
    assert phash_pairs(hashes, 6).tolist() == [[0, 1]]
    assert sorted(map(tuple, phash_pairs(hashes, 8).tolist())) == [(0, 1), (0, 3)]  # 1~3: 11 bits


def test_novelty_fit_score_and_model_roundtrip(syn):
    labels = fit_clusters(syn.X, ClusterConfig("kmeans", k=5)).labels
    model, scores = fit_model(syn.X, labels, NoveltyConfig())
    outlier = syn.kind == "outlier"
    assert scores.is_novel[outlier].mean() >= 0.8 and outlier[scores.is_novel].mean() >= 0.8
    planted_cluster = labels[syn.kind == "planted"][0]
    assert planted_cluster in model.contaminated and scores.is_contaminated[syn.kind == "planted"].all()
    again = DataModel.from_bytes(model.to_bytes())
    assert np.allclose(again.centroids, model.centroids) and again.contaminated == model.contaminated
    assert again.stats == {k: tuple(v) for k, v in model.stats.items()}
    ids, Xn, is_out = more_points(syn, 30, 6)
    new = score_new(Xn, syn.X, again)
    assert new.is_novel[is_out].mean() >= 0.8 and is_out[new.is_novel].mean() >= 0.8
    assert new.glosh_score is None and (new.surprise[is_out].min() > np.median(new.surprise[~is_out]))


def test_percentile_rule_flags_about_that_share(syn):
    labels = fit_clusters(syn.X, ClusterConfig("kmeans", k=5)).labels
    model, scores = fit_model(syn.X, labels, NoveltyConfig(rule="percentile", percentile=90))
    assert abs(scores.is_novel.mean() - 0.10) < 0.03
    assert model.threshold == pytest.approx(np.percentile(scores.novelty_score, 90))


def test_mixed_labels_make_a_cluster_contaminated(syn):
    labels = fit_clusters(syn.X, ClusterConfig("kmeans", k=5)).labels
    truth = list(syn.labels)
    target = labels[syn.kind == "blob"][0]
    rng = np.random.default_rng(0)
    for i in np.nonzero(labels == target)[0]:
        truth[i] = f"class{rng.integers(0, 4)}"  # scramble one cluster's labels
    model, scores = fit_model(syn.X, labels, NoveltyConfig(), truth=truth)
    assert "mixed labels" in model.contaminated[int(target)]
    assert scores.is_contaminated[labels == target].all()


def test_cluster_methods_are_looked_up_in_the_registry():
    assert cluster_method_names()[:5] == ("hdbscan", "kmeans", "kmedoids", "agglomerative", "dbscan")
    assert cluster_method("kmeans").needs_k and cluster_method("hdbscan").reduced_space
    assert all(cluster_method(m).placement for m in cluster_method_names())  # each says how it places unseen rows
    with pytest.raises(ConfigError, match="already registered"):
        register_method(ClusterMethod("kmeans", lambda X, cfg: None, "predict"))
