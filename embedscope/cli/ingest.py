"""`ingest`, `watch` and `ingest-vectors`: getting images and vectors into a database."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

from embedscope.cli.common import add_db, add_wait_lock, open_db, with_default
from embedscope.cli.verdicts import VERDICT_FLAGS, add_verdict_options, check_ingested, watch_callback
from embedscope.config import IngestSettings


def _add_ingest_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `ingest` and `watch`; their defaults are IngestSettings'."""
    from embedscope.models.registry import list_encoders

    def dflt(text: str, name: str, shown: Any = None) -> str:
        return with_default(text, IngestSettings, name, shown)

    add_db(p)
    p.add_argument("--model", help=dflt(f"encoder, or several comma-separated (each image decoded once, one table each): {', '.join(list_encoders())}", "model"))
    p.add_argument("--weights", help=dflt("hub | random | PATH to a weights file", "weights"))
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help=dflt("", "device"))
    p.add_argument("--batch-size", type=int,
                   help=dflt("images per model batch", "batch_size", "0 = auto: 32 on CPU, from free memory on CUDA"))
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help=dflt("auto: bf16 on CUDA; on CPU bf16 only if a start-up timing shows it faster", "precision"))
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the encoder")
    p.add_argument("--torch-threads", type=int, help=dflt("threads for the model on CPU", "torch_threads", "0: one per core"))
    p.add_argument("--decode", choices=["cpu", "gpu", "auto"],
                   help=dflt("where JPEG pixels are decoded: cpu (Pillow, in the worker threads), gpu (nvJPEG, "
                             "batched, resized on the GPU; needs CUDA), auto (gpu when the encoder is on CUDA)", "decode"))
    p.add_argument("--workers", type=int, help=dflt("decode threads", "workers", "0: CPU count, at most 8"))
    p.add_argument("--label-from-folder", action="store_true", default=None,
                   help="store each image's parent folder name as its label")
    p.add_argument("--image-size", type=int, help=dflt("model input side in pixels; 0 = the model's own (DINOv2: a multiple of 14; CLIP: its own size only)", "image_size"))
    p.add_argument("--preprocess", choices=["default", "xray"],
                   help=dflt("xray = grayscale + CLAHE before the model", "preprocess"))
    p.add_argument("--store-patch-mean", action="store_true", default=None,
                   help="also store the mean of the patch tokens per image")
    p.add_argument("--sam2", action="store_true", default=None,
                   help="also embed each image with its background masked out by SAM2")
    p.add_argument("--sam2-model", help=dflt("sam2.1_hiera_tiny | _small | _base_plus | _large", "sam2_model"))
    p.add_argument("--sam2-weights", help=dflt("hub | random | PATH to a SAM2 checkpoint", "sam2_weights"))
    p.add_argument("--sam2-max-side", type=int, help=dflt("longest image side given to SAM2", "sam2_max_side"))
    p.add_argument("--sam2-mask-mode", choices=["mean_fill", "crop"],
                   help=dflt("mean_fill: background set to the encoder's mean colour; crop: also cut to the mask's box",
                             "sam2_mask_mode"))
    p.add_argument("--max-file-size", dest="max_file_bytes", type=parse_size, metavar="SIZE",
                   help=dflt("a bigger file is quarantined without being read (bytes, or 512M, 2G, ...; "
                             "env EMBEDSCOPE_MAX_FILE_BYTES)", "max_file_bytes",
                             f"{IngestSettings().max_file_bytes // 2**20}M"))
    p.add_argument("--max-pixels", type=int, metavar="N",
                   help=dflt("an image whose header claims more pixels is quarantined (decompression bombs)",
                             "max_pixels"))
    p.add_argument("--config", metavar="FILE", help="TOML file with an [ingest] section")
    add_wait_lock(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)
    add_verdict_options(p)


_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_size(text: str) -> int:
    """``--max-file-size``: bytes, or a number with K/M/G/T (powers of 1024; ``MiB``/``MB`` alike)."""
    raw = text.strip().lower().removesuffix("b").removesuffix("i")
    unit = raw[-1:] if raw[-1:] in _SIZE_UNITS and raw[-1:] else ""
    try:
        value = float(raw[:-1] if unit else raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (use bytes, or e.g. 512M, 2G)") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"the size must be more than 0, got {text!r}")
    return int(value * _SIZE_UNITS[unit])


def ingest_settings(args: argparse.Namespace, drops: Sequence[str]) -> IngestSettings:
    """IngestSettings from flags > EMBEDSCOPE_* > the TOML [ingest] section > defaults."""
    from embedscope.config import load_settings
    from embedscope.ingest.encoders import model_names, with_model_image_size
    from embedscope.models.factory import check_encoder_options
    from embedscope.objectstore import as_items, parse_options

    flags = {k: v for k, v in vars(args).items()
             if k not in ("drops", "command", "handler", "config", "json", "wait_lock", *VERDICT_FLAGS)}
    flags["drops"] = tuple(drops)
    settings = with_model_image_size(load_settings(IngestSettings, flags, section="ingest", config_file=args.config))
    # the family's own rules (e.g. DINOv2's ×14 image size) fail here, before any database work
    first, *others = model_names(settings)
    check_encoder_options(first, image_size=settings.image_size, precision=settings.precision)
    for name in others:  # each other model at its own input size
        check_encoder_options(name, precision=settings.precision)
    if getattr(args, "storage_option", None):  # per key, over the env / TOML ones
        merged = {**settings.storage_option_dict(), **parse_options(args.storage_option)}
        settings = dataclasses.replace(settings, storage_options=as_items(merged))
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from embedscope.analysis.arrival_data import arrived_since, source_pairs
    from embedscope.ingest.pipeline import run_ingest

    settings = ingest_settings(args, args.drops)
    before: set = set()
    arrived: list | None = None

    def note_before(db: Any) -> None:  # under the writer lock: what another writer adds is not ours
        before.update(source_pairs(db))

    def note_after(db: Any) -> None:  # still under the same lock
        nonlocal arrived
        arrived = arrived_since(db, before)

    check = args.verdicts  # the local and the Ray executor alike: both write from this process
    summary = run_ingest(settings, wait_lock=args.wait_lock, on_locked=note_before if check else None,
                         on_done=note_after if check else None)
    print(summary.one_line(), file=sys.stderr)
    out = summary.as_dict()
    if arrived is not None:
        result = check_ingested(settings, arrived, model=summary.model, args=args, wait_lock=args.wait_lock)
        print(result.one_line(), file=sys.stderr)
        out["verdicts"] = {"drop_id": result.drop_id, "counts": result.counts}
    if args.json:
        print(json.dumps(out, default=str))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from embedscope.config import load_settings
    from embedscope.config import WatchSettings
    from embedscope.ingest.daemon import run_watch

    settings = ingest_settings(args, args.drops)
    watch = load_settings(WatchSettings, vars(args), section="watch", config_file=args.config)
    on_batch = watch_callback(args, label_from_folder=settings.label_from_folder, drops=settings.drops)
    if args.report_dir:  # an unwritable folder fails now, not after the first batch
        from pathlib import Path

        Path(args.report_dir).expanduser().mkdir(parents=True, exist_ok=True)
    totals = run_watch(settings, watch, wait_lock=args.wait_lock, json_lines=args.json, analyze=_refresh_novelty,
                       on_batch=on_batch)
    print(totals.one_line(), file=sys.stderr)
    return 0


def _refresh_novelty(db: Any, model: str) -> str | None:
    """``watch --on-batch-analyze``: the daemon's analysis callback (the daemon, in ingest, may
    not import analysis)."""
    from embedscope.analysis.jobs import refresh_novelty

    return refresh_novelty(db, model=model)


def cmd_ingest_vectors(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embedscope.analysis.vectors_import import import_vectors

    db = open_db(args, create=True)
    with db.writer_lock(wait=args.wait_lock, owner="ingest-vectors"):
        summary = import_vectors(db, Path(args.file), model=args.model, ids_file=Path(args.ids) if args.ids else None,
                                 id_column=args.id_column, vector_column=args.vector_column,
                                 label_column=args.label_column or None)
    print(summary.one_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.__dict__))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("ingest", help="embed the images of one or more drops into a database, once")
    p.add_argument("drops", nargs="+", metavar="DROP", help="folders (or files) to ingest")
    _add_ingest_options(p)
    g = p.add_argument_group("scaling out (see docs/scaling-out.md)")
    g.add_argument("--executor", choices=["local", "ray"],
                   help=with_default("local: threads in this process; ray: the same stages as Ray Data tasks and "
                                     "encoder actors, rows written from this process", IngestSettings, "executor"))
    g.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join: auto, ray://head:10001, ... (default: start a local one)")
    g.add_argument("--ray-workers", type=int, metavar="N",
                   help="encoder actors (default: one per GPU share, else one per --torch-threads CPUs (default 1))")
    g.add_argument("--num-gpus-per-worker", type=float, metavar="N",
                   help=with_default("GPUs per encoder actor (0: CPU actors)", IngestSettings, "num_gpus_per_worker"))
    p.set_defaults(handler=cmd_ingest)

    from embedscope.config import WatchSettings

    def wdflt(text: str, name: str) -> str:
        return with_default(text, WatchSettings, name)

    p = sub.add_parser("watch", help="ingest drops continuously (a daemon; SIGTERM/Ctrl-C stops it cleanly)",
                       description="Poll the drops and ingest new or changed files once they have stopped "
                       "changing, with the same pipeline as `ingest`. Safe to kill at any moment: a restart "
                       "finishes what was cut off. One watch per database (see --wait-lock).")
    p.add_argument("drops", nargs="+", metavar="DROP", help="folders to watch")
    _add_ingest_options(p)
    p.add_argument("--interval", type=float, metavar="SECONDS", help=wdflt("seconds between polls", "interval"))
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help=wdflt("a file must be unchanged this long, and across two polls, before it is read", "settle"))
    p.add_argument("--incomplete-grace", type=float, metavar="SECONDS",
                   help=wdflt("hold an image file whose end is not written yet (JPEG, PNG, GIF, BMP, WebP, TIFF) this long after its mtime", "incomplete_grace"))
    p.add_argument("--heartbeat", type=float, metavar="SECONDS", help=wdflt("seconds between 'alive' log lines", "heartbeat"))
    p.add_argument("--max-files-per-batch", type=int, metavar="N",
                   help=wdflt("files per pipeline run and writer-lock hold", "max_files_per_batch"))
    p.add_argument("--on-batch-analyze", type=int, metavar="N",
                   help=wdflt("refresh novelty flags after every N new images (0: never)", "on_batch_analyze"))
    p.add_argument("--optimize-every", type=float, metavar="SECONDS",
                   help=wdflt("compact the tables the daemon writes at most this often (0: never)", "optimize_every"))
    p.add_argument("--report-dir", metavar="DIR",
                   help="after each checked batch write its drop report there: <drop_id>.html and .json")
    p.set_defaults(handler=cmd_watch)

    p = sub.add_parser("ingest-vectors", help="import precomputed embeddings (Parquet, or .npy + --ids)")
    p.add_argument("file", metavar="FILE", help=".parquet, or .npy with --ids")
    add_db(p)
    p.add_argument("--model", required=True, help="name to store the vectors under")
    p.add_argument("--ids", metavar="FILE", help="for .npy: text file, one id per line, in row order")
    p.add_argument("--id-column", default="id", help="Parquet id column (default id)")
    p.add_argument("--vector-column", default="vector", help="Parquet vector column (default vector)")
    p.add_argument("--label-column", default="label", help="Parquet label column, if present (default label)")
    add_wait_lock(p)
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(handler=cmd_ingest_vectors)
