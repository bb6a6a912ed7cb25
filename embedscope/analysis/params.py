"""What an analyze run does (:class:`AnalysisParams`, every default explicit) and the ids runs get."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

from embedscope.analysis.backend import BACKENDS
from embedscope.analysis.clustering import cluster_method
from embedscope.analysis.duplicates import DuplicateConfig
from embedscope.analysis.novelty import NoveltyConfig
from embedscope.analysis.projection import PROJECTION_METHODS
from embedscope.errors import ConfigError
from embedscope.store.db import utc_now


@dataclass(frozen=True)
class AnalysisParams:
    """Everything an analyze run does, with explicit defaults (all stored in ``runs.params``)."""

    model: str | None = None  # None: the only model in the database
    variant: str | None = None  # None: 'full' if present, else the only one
    project: tuple[str, ...] = ("umap",)
    dims: tuple[int, ...] = (2,)
    cluster: tuple[str, ...] = ("hdbscan", "kmeans")  # the first is the primary clustering
    k: int | None = None  # None = auto: best silhouette over k_min..k_max (k-means sweep)
    k_min: int = 2
    k_max: int | None = None  # None: grows with N, min(60, max(15, sqrt(N)/2)) (clustering.k_grid)
    hdbscan_space: str = "umap"  # 'umap' | 'pca': the reduced space HDBSCAN / DBSCAN run in
    hdbscan_dims: int = 10
    hdbscan_umap_epochs: int | None = 100  # epochs of that UMAP when it only feeds HDBSCAN (None: umap-learn's 200-500)
    min_cluster_size: int | None = None
    min_samples: int = 5
    eps: float | None = None
    max_fit: int = 5_000
    hdbscan_max_fit: int = 20_000  # a sampled run's HDBSCAN fits on this many rows (an all-rows run: every row)
    seed: int = 0
    holdout: float = 0.0  # fraction of images left out of fitting and scored against the model
    silhouette_sample: int = 5_000
    knn_exact_max: int = 20_000  # above this many fit rows the kNN graph is HNSW (recall stated), else exact
    knn_search_dims: int = 64  # (the index a sampled run places rows with)
    reproducible_max: int = 20_000  # up to this many fit rows the kNN graph and UMAP are seeded and
    # single-threaded (bit-reproducible); above it both use every core (a layout differs run to run)
    n_neighbors: int = 15
    min_dist: float = 0.1
    perplexity: float = 30.0
    tsne_max_fit: int = 20_000
    fit_sample: int = 200_000  # above this many fit rows: fit on a seeded sample, place the rest (0 = never)
    batch_size: int = 16_384  # rows per batch of the streaming placement / scoring pass
    backend: str = "auto"  # 'auto' | 'cpu' | 'cuml' (UMAP, HDBSCAN, k-means on the GPU)
    novelty: NoveltyConfig = field(default_factory=NoveltyConfig)
    duplicates: DuplicateConfig = field(default_factory=DuplicateConfig)

    def __post_init__(self) -> None:
        for m in self.project:
            if m not in PROJECTION_METHODS:
                raise ConfigError(f"unknown projection {m!r}", f"--project takes {','.join(PROJECTION_METHODS)}")
        for m in self.cluster:
            cluster_method(m)  # unknown: a ConfigError naming the registered methods
        if not self.cluster:
            raise ConfigError("no clustering method given", "pass --cluster hdbscan (or kmeans, ...)")
        if not 0.0 <= self.holdout < 1.0:
            raise ConfigError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.hdbscan_space not in ("umap", "pca"):
            raise ConfigError(f"unknown --hdbscan-space {self.hdbscan_space!r}", "use umap or pca")
        if any(d not in (2, 3) for d in self.dims):
            raise ConfigError(f"--dims takes 2 and/or 3, got {self.dims}")
        if self.fit_sample < 0 or 0 < self.fit_sample < 50:
            raise ConfigError(f"--fit-sample must be 0 (always fit every row) or >= 50, got {self.fit_sample}")
        if self.reproducible_max < 0:
            raise ConfigError(f"--reproducible-max must be >= 0, got {self.reproducible_max}")
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown backend {self.backend!r}", f"--backend takes {', '.join(BACKENDS)}")

    @property
    def primary_cluster(self) -> str:
        return self.cluster[0]

    @property
    def primary_projection(self) -> str | None:
        return self.project[0] if self.project else None

    @property
    def primary_dims(self) -> int:
        return 2 if 2 in self.dims else self.dims[0]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["project"], d["dims"], d["cluster"] = list(self.project), list(self.dims), list(self.cluster)
        return d


def new_run_id() -> str:
    """Sortable and unique: ``20260101T120000Z-1a2b3c``."""
    return utc_now().strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
