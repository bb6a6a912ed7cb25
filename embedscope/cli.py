"""The ``embedscope`` command line.

Parsing is cheap (no torch, no LanceDB); each command imports what it needs when it runs.
Errors a user can fix print one line — what went wrong and how to fix it — and exit
non-zero; anything else is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from embedscope import __version__
from embedscope.errors import EmbedscopeError

log = logging.getLogger("embedscope")

Handler = Callable[[argparse.Namespace], int]


def _add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, metavar="DIR", help="database folder (or object-store URI)")


def _add_ingest_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `ingest` and `watch` (defaults live in IngestSettings)."""
    from embedscope.models.registry import list_encoders

    _add_db(p)
    p.add_argument("--model", help=f"encoder (default dinov2_vits14): {', '.join(list_encoders())}")
    p.add_argument("--weights", help="hub (default) | random | PATH to a weights file")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    p.add_argument("--batch-size", type=int,
                   help="images per model batch (default 0 = auto: 32 on CPU, from free memory on CUDA)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="default auto: bf16 on CUDA; on CPU bf16 only if a start-up timing shows it faster")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the encoder")
    p.add_argument("--torch-threads", type=int, help="threads for the model on CPU (default: one per core)")
    p.add_argument("--workers", type=int, help="decode threads (default: CPU count, at most 8)")
    p.add_argument("--label-from-folder", action="store_true", default=None,
                   help="store each image's parent folder name as its label")
    p.add_argument("--image-size", type=int, help="model input side in pixels, multiple of 14 (default 224)")
    p.add_argument("--preprocess", choices=["default", "xray"],
                   help="xray = grayscale + CLAHE before the model (default: default)")
    p.add_argument("--store-patch-mean", action="store_true", default=None,
                   help="also store the mean of the patch tokens per image")
    p.add_argument("--sam2", action="store_true", default=None,
                   help="also embed each image with its background masked out by SAM2")
    p.add_argument("--sam2-model", help="sam2.1_hiera_tiny (default) | _small | _base_plus | _large")
    p.add_argument("--sam2-weights", help="hub (default) | random | PATH to a SAM2 checkpoint")
    p.add_argument("--sam2-max-side", type=int, help="longest image side given to SAM2 (default 1024)")
    p.add_argument("--config", metavar="FILE", help="TOML file with an [ingest] section")
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing the database, wait this long for it")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def ingest_settings(args: argparse.Namespace, drops: Sequence[str]) -> Any:
    from embedscope.config import IngestSettings, load_settings

    flags = {k: v for k, v in vars(args).items() if k not in ("drops", "command", "handler", "config", "json", "wait_lock")}
    flags["drops"] = tuple(drops)
    return load_settings(IngestSettings, flags, section="ingest", config_file=args.config)


def cmd_ingest(args: argparse.Namespace) -> int:
    from embedscope.ingest.pipeline import run_ingest

    settings = ingest_settings(args, args.drops)
    summary = run_ingest(settings, wait_lock=args.wait_lock)
    print(summary.one_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict(), default=str))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from embedscope.store.db import Database
    from embedscope.store.queries import stats

    result = stats(Database(args.db))
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            if isinstance(value, dict):
                print(f"{key}:")
                for k, v in value.items():
                    print(f"  {k}: {v}")
            else:
                print(f"{key}: {value}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from embedscope.models.registry import ENCODERS

    for name, cfg in sorted(ENCODERS.items()):
        print(f"{name:22} dim {cfg.dim:5}  timm {cfg.timm_name}  hub {cfg.hf_hub_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedscope",
        description="Index image collections by their embeddings (DINOv2, SAM2-masked) in LanceDB, "
        "analyse them, and explore them in a dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"embedscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", help="embed the images of one or more drops into a database, once")
    p.add_argument("drops", nargs="+", metavar="DROP", help="folders (or files) to ingest")
    _add_ingest_options(p)
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("stats", help="row counts of a database")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("models", help="list the registered encoders")
    p.set_defaults(handler=cmd_models)

    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("embedscope").setLevel(min(level, logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _configure_logging(args.verbose)
    try:
        return args.handler(args)
    except EmbedscopeError as exc:
        print(f"embedscope {args.command}: error: {exc.one_line()}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"embedscope {args.command}: interrupted", file=sys.stderr)
        return 130
