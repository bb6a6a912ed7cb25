"""Within-image patch clustering: the DINOv2 patch tokens of one image, clustered with
k-means, for a coloured overlay and example patches per cluster. Computed on demand with
the model (and weights) the image's stored embedding came from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class PatchClusters:
    crop: np.ndarray  # (S, S, 3) uint8: what the model saw (resized + centre-cropped)
    labels: np.ndarray  # (g, g) int: cluster of each patch
    patch: int  # patch side in pixels
    weights: str  # the weights label ('random', 'hub:...')


def cluster_patches(tokens: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels of (n_patches, dim) tokens (cosine: rows are L2-normalised first)."""
    from sklearn.cluster import KMeans

    X = np.asarray(tokens, np.float64)
    X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    k = max(1, min(int(k), len(X)))
    return KMeans(k, n_init=4, random_state=seed).fit_predict(X)


def example_patches(crop: np.ndarray, labels: np.ndarray, patch: int, per_cluster: int = 6) -> dict[int, list[np.ndarray]]:
    """Up to ``per_cluster`` patch crops (row-major order) for each cluster label."""
    out: dict[int, list[np.ndarray]] = {}
    g = labels.shape[0]
    for r in range(g):
        for c in range(g):
            lab = int(labels[r, c])
            if len(out.setdefault(lab, [])) < per_cluster:
                out[lab].append(crop[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch])
    return dict(sorted(out.items()))


def patch_clusters(loaded: Any, image: Any, k: int) -> PatchClusters:
    """Cluster the patch tokens of a PIL ``image`` seen by ``loaded``
    (:class:`embedscope.dashboard.encoders.LoadedEncoder`) into ``k`` groups."""
    encoder = loaded.encoder
    with loaded.lock:
        crop = encoder.preprocessor.resize_crop(image.convert("RGB"))
        tokens = encoder.tokens(encoder.preprocessor.to_array(crop)[None])[0].cpu().numpy()
    patches = tokens[encoder.config.num_prefix_tokens:]
    g = int(round(len(patches) ** 0.5))
    labels = cluster_patches(patches, k).reshape(g, g)
    return PatchClusters(np.asarray(crop, np.uint8), labels, crop.size[0] // g, loaded.embedder.weights)
