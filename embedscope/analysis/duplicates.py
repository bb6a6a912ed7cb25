"""Near-duplicate groups: by embedding (cosine distance) and by perceptual hash (Hamming).

They catch different things: the embedding catches the same subject re-shot, cropped or
recoloured; the 64-bit DCT hash catches the same picture re-encoded or resized, and is blind
to what the model thinks. Exact duplicates are already collapsed by SHA-256 at ingest.
A group is a connected component of the "within threshold" graph; singletons get no group.
Group ids are 0.. in order of decreasing size (then first row).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DuplicateConfig:
    cosine_threshold: float = 0.03  # embedding pairs with cosine distance <= this
    hamming_threshold: int = 6  # phash pairs with Hamming distance <= this (of 64 bits)
    phash_max_rows: int = 50_000  # the all-pairs phash comparison is skipped above this (stated)
    search_dims: int = 96  # the PCA space of the exact range search (analysis/near_pairs.py)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def groups_from_pairs(n: int, pairs: np.ndarray) -> np.ndarray:
    """Connected components of ``pairs`` (m × 2 row indices): int64 group per row, -1 = alone."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    out = np.full(n, -1, np.int64)
    if n == 0 or len(pairs) == 0:
        return out
    pairs = np.asarray(pairs, np.int64)
    g = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(g, directed=False)
    sizes = np.bincount(comp)
    multi = [c for c in np.unique(comp) if sizes[c] > 1]
    first = {c: int(np.argmax(comp == c)) for c in multi}
    order = sorted(multi, key=lambda c: (-sizes[c], first[c]))
    remap = {c: i for i, c in enumerate(order)}
    for c, gid in remap.items():
        out[comp == c] = gid
    return out


def embedding_pairs(neighbor_idx: np.ndarray, neighbor_dist: np.ndarray, threshold: float) -> np.ndarray:
    """Pairs (i, j), i < j, among each row's nearest neighbours with distance <= ``threshold``."""
    rows, cols = np.nonzero(neighbor_dist <= threshold)
    a, b = rows, neighbor_idx[rows, cols]
    pairs = np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0) if len(pairs) else pairs.reshape(0, 2)


def phash_pairs(hashes: np.ndarray, threshold: int, *, chunk: int = 2048) -> np.ndarray:
    """All pairs (i, j), i < j, of 64-bit hashes within ``threshold`` bits. Null hashes: pass
    a masked-out subset; this compares every pair, in chunks (numpy popcount)."""
    h = np.asarray(hashes, np.int64).view(np.uint64)
    n = len(h)
    out = []
    for start in range(0, n, chunk):
        block = h[start:start + chunk]
        d = np.bitwise_count(block[:, None] ^ h[None, :])
        r, c = np.nonzero(d <= threshold)
        r = r + start
        keep = c > r
        out.append(np.stack([r[keep], c[keep]], axis=1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)
