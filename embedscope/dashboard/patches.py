"""Within-image patch clustering: the DINOv2 patch tokens of one image, clustered with
k-means, for a coloured overlay and example patches per cluster. Computed on demand with
the model (and weights) the image's stored embedding came from."""

from __future__ import annotations

import threading
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


class EncoderCache:
    """Encoders built on first use and kept per (model, weights) — building one costs seconds."""

    def __init__(self) -> None:
        self._encoders: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()

    def get(self, model: str, weights_label: str) -> Any:
        from embedscope.errors import WeightsNotFoundError
        from embedscope.models.factory import create_encoder

        key = (model, weights_label)
        with self._lock:
            if key not in self._encoders:
                if weights_label == "random":
                    spec = "random"
                elif weights_label.startswith("hub:"):
                    spec = "hub"
                else:
                    raise WeightsNotFoundError(
                        f"the embeddings were made with weights {weights_label!r}, which the dashboard cannot locate",
                        "patch clustering needs the same weights: use hub or random weights, or re-ingest")
                self._encoders[key] = create_encoder(model, weights=spec, device="auto")
            return self._encoders[key]

    def patch_clusters(self, image: Any, model: str, weights_label: str, k: int) -> PatchClusters:
        """Cluster the patch tokens of a PIL ``image`` (one caller at a time per encoder)."""
        encoder = self.get(model, weights_label)
        with self._lock:
            crop = encoder.preprocessor.resize_crop(image.convert("RGB"))
            tokens = encoder.tokens(encoder.preprocessor.to_array(crop)[None])[0].cpu().numpy()
        patches = tokens[encoder.config.num_prefix_tokens:]
        g = int(round(len(patches) ** 0.5))
        labels = cluster_patches(patches, k).reshape(g, g)
        return PatchClusters(np.asarray(crop, np.uint8), labels, crop.size[0] // g, weights_label)
