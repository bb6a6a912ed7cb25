"""Which library fits UMAP / HDBSCAN / k-means: RAPIDS cuML on a CUDA GPU, or the CPU libraries.

``--backend auto`` (the default) uses cuML when ``import cuml`` works **and** a CUDA device is
visible, and otherwise says in one log line why not and uses umap-learn / hdbscan /
scikit-learn. ``--backend cuml`` fails with a hint when cuML cannot be used; ``--backend cpu``
never tries. Only these three methods have a cuML path; PCA, t-SNE, k-medoids, agglomerative
and DBSCAN always run on the CPU. The resolved backend and its reason go into ``runs.params``.

>>> resolve_backend("cpu").name
'cpu'
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Any

from embedscope.errors import ConfigError, DependencyError

log = logging.getLogger(__name__)

BACKENDS = ("auto", "cpu", "cuml")
GPU_METHODS = ("umap", "hdbscan", "kmeans")
CUML_HINT = ("install RAPIDS cuML on a machine with a CUDA GPU (e.g. `pip install cuml-cu12 "
             "--extra-index-url=https://pypi.nvidia.com`), or run with --backend cpu / auto")


@dataclass(frozen=True)
class Backend:
    """The resolved backend: ``name`` is 'cpu' or 'cuml'; ``reason`` says why it was chosen."""

    name: str = "cpu"
    reason: str = "requested"

    @property
    def gpu(self) -> bool:
        return self.name == "cuml"

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "gpu_methods": list(GPU_METHODS) if self.gpu else []}


def cuml_unavailable() -> str | None:
    """None when cuML is importable and a CUDA device is visible; else the reason, in a few words."""
    try:
        import cuml  # noqa: F401
    except Exception as exc:  # ImportError, or a broken CUDA install raising at import
        return f"import cuml failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
    try:
        import cupy

        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:
        return f"no usable CUDA device: {type(exc).__name__}"
    if count < 1:
        return "no CUDA device visible"
    return None


def resolve_backend(choice: str = "auto") -> Backend:
    """Resolve ``auto`` / ``cpu`` / ``cuml`` to the backend this machine can run."""
    if choice not in BACKENDS:
        raise ConfigError(f"unknown backend {choice!r}", f"--backend takes {', '.join(BACKENDS)}")
    if choice == "cpu":
        return Backend("cpu", "requested (--backend cpu)")
    reason = cuml_unavailable()
    if reason is None:
        log.info("analysis backend: cuML on the GPU for %s", ", ".join(GPU_METHODS))
        return Backend("cuml", "cuML importable and a CUDA device present")
    if choice == "cuml":
        raise DependencyError(f"--backend cuml, but cuML cannot be used here ({reason})", CUML_HINT)
    log.info("cuML not available (%s); using CPU umap-learn/hdbscan/scikit-learn", reason)
    return Backend("cpu", f"cuML not available ({reason})")


def to_host(a: Any) -> Any:
    """A cuML/CuPy result as a NumPy array (NumPy input is returned as is)."""
    import numpy as np

    if hasattr(a, "to_numpy"):
        return a.to_numpy()
    if hasattr(a, "get"):
        return a.get()
    return np.asarray(a)
