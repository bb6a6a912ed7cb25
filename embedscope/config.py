"""Typed settings, parsed once and passed down.

Precedence, highest first: command-line flags, ``EMBEDSCOPE_<FIELD>`` environment variables,
a TOML file (``--config FILE``, section named after the command, e.g. ``[ingest]``), then the
defaults below. Nothing here reads the environment at import time.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, TypeVar

from embedscope.errors import ConfigError

DEFAULT_MODEL = "dinov2_vits14"
ENV_PREFIX = "EMBEDSCOPE_"

PREPROCESS_MODES = ("default", "xray")
DEVICES = ("auto", "cpu", "cuda")
SAM2_MASK_MODES = ("mean_fill", "crop")
PRECISIONS = ("auto", "fp32", "bf16")  # the encoders' too (embedscope.models.device)
EXECUTORS = ("local", "ray")
DECODES = ("cpu", "gpu", "auto")


@dataclass(frozen=True)
class IngestSettings:
    """Everything one ingest (one-shot or daemon batch) needs.

    ``weights`` is ``hub`` (Hugging Face cache or hub), ``random`` (same architecture,
    random weights, seeded) or a path to a local weights file.
    """

    drops: tuple[str, ...] = ()
    db: str = ""
    model: str = DEFAULT_MODEL
    weights: str = "hub"
    device: str = "auto"
    batch_size: int = 0  # 0 = auto: 32 on CPU, from free memory on CUDA
    workers: int = 0  # 0 = choose from the CPU count
    label_from_folder: bool = False
    image_size: int = 0  # 0 = the model's own input size (its registry entry; resolved by ingest)
    preprocess: str = "default"
    store_patch_mean: bool = False
    max_pixels: int = 178_956_970  # decoded pixels per image (header-checked before decoding)
    max_file_bytes: int = 256 * 2**20  # bytes per file, checked on the open file before reading it
    thumbnail_size: int = 128
    prefetch_batches: int = 2
    sam2: bool = False
    sam2_model: str = "sam2.1_hiera_tiny"
    sam2_weights: str = "hub"
    sam2_max_side: int = 1024
    sam2_mask_mode: str = "mean_fill"
    progress: bool = True
    precision: str = "auto"  # auto | fp32 | bf16 (auto: bf16 on CUDA; on CPU only if measured faster)
    compile: bool = False  # torch.compile the encoder (helps on CUDA; minutes of start-up on CPU)
    torch_threads: int = 0  # 0 = torch's default (one per core)
    decode: str = "cpu"  # JPEG pixels: cpu (Pillow, worker threads) | gpu (nvJPEG, batched) | auto
    write_images: int = 256  # the writer commits once this many images have queued up ...
    write_seconds: float = 5.0  # ... or this long after the oldest uncommitted batch
    executor: str = "local"  # local | ray (the same stages as Ray Data operations; see ingest/ray_executor.py)
    ray_address: str = ""  # "" = start a local Ray; "auto" or ray://head:10001 = join that cluster
    ray_workers: int = 0  # encoder actors; 0 = one per GPU share (GPU actors), else one per torch_threads CPUs
    num_gpus_per_worker: float = 0.0  # > 0: encoder actors are GPU actors asking this many GPUs each
    # object stores (--db s3://..., s3:// drops): "key=value" items in LanceDB's vocabulary, on
    # top of the AWS_* environment (see embedscope.objectstore); TOML may give a table instead
    storage_options: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.preprocess not in PREPROCESS_MODES:
            raise ConfigError(
                f"unknown --preprocess {self.preprocess!r}",
                f"use one of: {', '.join(PREPROCESS_MODES)}",
            )
        if self.device not in DEVICES:
            raise ConfigError(f"unknown --device {self.device!r}", f"use one of: {', '.join(DEVICES)}")
        if self.sam2_mask_mode not in SAM2_MASK_MODES:
            raise ConfigError(f"unknown --sam2-mask-mode {self.sam2_mask_mode!r}", f"use one of: {', '.join(SAM2_MASK_MODES)}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown --precision {self.precision!r}", f"use one of: {', '.join(PRECISIONS)}")
        if self.decode not in DECODES:
            raise ConfigError(f"unknown --decode {self.decode!r}", f"use one of: {', '.join(DECODES)}")
        for name in ("batch_size", "torch_threads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} must be 0 (auto) or more")
        if self.image_size < 0:
            raise ConfigError("--image-size must be 0 (the model's own size) or more")
        for name in ("thumbnail_size", "prefetch_batches", "sam2_max_side", "max_pixels", "max_file_bytes"):
            if getattr(self, name) < 1:
                flag = "max-file-size" if name == "max_file_bytes" else name.replace("_", "-")
                raise ConfigError(f"--{flag} must be at least 1")
        if self.workers < 0:
            raise ConfigError("--workers must be 0 (auto) or more")
        if self.executor not in EXECUTORS:
            raise ConfigError(f"unknown --executor {self.executor!r}", f"use one of: {', '.join(EXECUTORS)}")
        if self.ray_workers < 0 or self.num_gpus_per_worker < 0:
            raise ConfigError("--ray-workers and --num-gpus-per-worker must be 0 (auto / CPU) or more")

    def storage_option_dict(self) -> dict[str, str]:
        """The explicit storage options as a dict (the environment is added where they are used)."""
        from embedscope.objectstore import parse_options

        return parse_options(self.storage_options)

    @property
    def worker_count(self) -> int:
        return self.workers or max(1, min(8, (os.cpu_count() or 2)))


@dataclass(frozen=True)
class WatchSettings:
    """How the daemon polls, settles and batches (the ingest itself is :class:`IngestSettings`)."""

    interval: float = 2.0  # seconds between polls of the drops
    settle: float = 2.0  # a file must look unchanged this long (and across two polls)
    incomplete_grace: float = 300.0  # hold an unfinished-looking image file this long after its mtime
    heartbeat: float = 60.0  # seconds between "alive" log lines (0: never)
    max_files_per_batch: int = 256  # files handed to one pipeline run (and one writer-lock hold)
    on_batch_analyze: int = 0  # refresh novelty flags after every N new images (0: never)
    optimize_every: float = 3600.0  # compact the tables written at most this often (0: never)

    def __post_init__(self) -> None:
        if self.interval <= 0:
            raise ConfigError("--interval must be more than 0 seconds")
        for name in ("settle", "incomplete_grace", "heartbeat", "optimize_every"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{name.replace('_', '-')} cannot be negative")
        if self.max_files_per_batch < 1:
            raise ConfigError("--max-files-per-batch must be at least 1")
        if self.on_batch_analyze < 0:
            raise ConfigError("--on-batch-analyze must be 0 (off) or a number of new images")


S = TypeVar("S")


def _optional_of(target: Any) -> Any:
    """``X`` for an ``X | None`` annotation, else None."""
    if typing.get_origin(target) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(target) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(target)) == 2:
            return args[0]
    return None


def _coerce(value: Any, target: Any, name: str) -> Any:
    inner = _optional_of(target)
    if inner is not None:  # "X | None": "", "none" and "auto" mean None
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "auto")):
            return None
        target = inner
    if name == "storage_options":  # "k=v,k2=v2" (env), a TOML table or list → ("k=v", ...)
        from embedscope.objectstore import as_items, options_from_env

        if isinstance(value, str):
            return as_items(options_from_env({"EMBEDSCOPE_STORAGE_OPTIONS": value}))
        if isinstance(value, Mapping):
            return as_items({str(k): str(v) for k, v in value.items()})
        return as_items([str(v) for v in value])
    if isinstance(value, str):
        if target is bool:
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ConfigError(f"{name}: expected true/false, got {value!r}")
        if target is int:
            try:
                return int(value)
            except ValueError:
                raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if target is float:
            try:
                return float(value)
            except ValueError:
                raise ConfigError(f"{name}: expected a number, got {value!r}") from None
        if target == tuple[str, ...]:
            sep = os.pathsep if name == "drops" else ","  # drops are paths; other lists are "a,b"
            return tuple(p.strip() for p in value.split(sep) if p.strip())
        if target == tuple[int, ...]:
            value = [p for p in value.split(",") if p.strip()]
    if target == tuple[str, ...] and isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    if target == tuple[int, ...] and isinstance(value, (list, tuple)):
        try:
            return tuple(int(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a list of integers, got {value!r}") from None
    return value


def load_settings(
    cls: type[S],
    flags: Mapping[str, Any],
    *,
    section: str,
    config_file: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    env_prefix: str | None = None,
) -> S:
    """Build ``cls`` from flags (``None`` = not given), env vars, a TOML section and defaults.

    ``section`` may be dotted (``analyze.novelty`` reads the TOML table ``[analyze.novelty]``);
    env vars are ``env_prefix`` + the field name in capitals (default ``EMBEDSCOPE_``).
    A flag may give a field's final value (e.g. an already built nested config)."""
    environ = os.environ if environ is None else environ
    prefix = ENV_PREFIX if env_prefix is None else env_prefix
    file_values: dict[str, Any] = {}
    if config_file:
        try:
            with open(config_file, "rb") as fh:
                file_values = tomllib.load(fh)
            for part in section.split("."):
                file_values = file_values.get(part, {})
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {config_file}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {config_file} is not valid TOML: {exc}") from None
    values: dict[str, Any] = {}
    types = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    for name in names:
        if flags.get(name) is not None:
            raw = flags[name]
        elif prefix + name.upper() in environ:
            raw = environ[prefix + name.upper()]
        elif name in file_values:
            raw = file_values[name]
        else:
            continue
        values[name] = _coerce(raw, types[name], name)
    unknown = set(file_values) - set(names)
    if unknown:
        raise ConfigError(
            f"unknown setting(s) in [{section}] of {config_file}: {', '.join(sorted(unknown))}",
            f"known: {', '.join(sorted(names))}",
        )
    return cls(**values)

