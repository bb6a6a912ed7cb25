"""Where model weights come from, decided before anything touches the database.

``hub``    the Hugging Face cache, else the hub (fails fast and readably when offline)
``random`` the same architecture with seeded random weights — for tests and offline smoke
           runs only, announced on stderr and recorded as ``random`` in every row it makes
PATH       a local weights file (safetensors or a PyTorch state dict), recorded by its sha256
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from embedscope.errors import WeightsNotFoundError

log = logging.getLogger(__name__)

RANDOM_SEED = 0


@dataclass(frozen=True)
class WeightSource:
    kind: str  # 'hub' | 'file' | 'random'
    label: str  # what is stored in the rows' `weights` column
    path: Path | None = None  # the local file to load (hub weights resolve to the cache file)

    @property
    def is_random(self) -> bool:
        return self.kind == "random"


def file_sha256(path: Path) -> str:
    from embedscope.hashing import sha256_file

    return sha256_file(path)


def resolve_weights(spec: str, *, repo_id: str, filename: str, what: str) -> WeightSource:
    """Turn ``--weights`` into a :class:`WeightSource`, or raise one readable error.

    ``repo_id``/``filename`` name the hub file (e.g. ``timm/vit_small_patch14_dinov2.lvd142m``,
    ``model.safetensors``); ``what`` names the model in messages.
    """
    if spec == "random":
        return WeightSource("random", "random")
    if spec == "hub":
        return _resolve_hub(repo_id, filename, what)
    path = Path(spec).expanduser()
    if not path.is_file():
        raise WeightsNotFoundError(
            f"weights file not found: {spec}",
            f"--weights takes 'hub', 'random' or the path of a {filename} for {what}",
        )
    return WeightSource("file", f"file:{file_sha256(path)}", path.resolve())


def _check_hub_reachable(timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when the hub cannot be reached at all."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        raise OSError("HF_HUB_OFFLINE is set")
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise OSError(f"{host} unreachable: {exc.strerror or exc}") from None


def _resolve_hub(repo_id: str, filename: str, what: str) -> WeightSource:
    try:
        from huggingface_hub import hf_hub_download, try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency of timm
        raise WeightsNotFoundError("huggingface_hub is not installed", "pip install huggingface_hub") from None

    cached = try_to_load_from_cache(repo_id, filename)
    if isinstance(cached, str) and os.path.isfile(cached):
        return WeightSource("hub", f"hub:{repo_id}", Path(cached))
    try:
        _check_hub_reachable()
        hub_log = logging.getLogger("huggingface_hub")
        level = hub_log.level
        hub_log.setLevel(logging.ERROR)  # its retry warnings would bury our one-line message
        try:
            local = hf_hub_download(repo_id, filename, etag_timeout=10)
        finally:
            hub_log.setLevel(level)
    except Exception as exc:  # offline, DNS failure, 404, auth ... all end the same way
        reason = str(exc) if isinstance(exc, OSError) and not exc.args[1:] else type(exc).__name__
        raise WeightsNotFoundError(
            f"cannot load pretrained {what} weights: not in the Hugging Face cache and the hub "
            f"is unreachable ({reason})",
            f"download https://huggingface.co/{repo_id}/resolve/main/{filename} and pass "
            f"--weights PATH, or pre-fill the cache (HF_HOME) with `huggingface-cli download "
            f"{repo_id} {filename}`, or use --weights random for a smoke run (meaningless vectors)",
        ) from None
    return WeightSource("hub", f"hub:{repo_id}", Path(local))
