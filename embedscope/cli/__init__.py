"""The ``embedscope`` command line: one module per command group.

Parsing is cheap (no torch, no LanceDB); each command imports what it needs when it runs.
Errors a user can fix print one line — what went wrong and how to fix it — and exit
non-zero; anything else is a bug and shows its traceback.

To add a command: a ``cmd_*`` handler and its arguments in the group's module (or a new module
with a ``register(sub)``, listed in :data:`GROUPS`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from embedscope import __version__
from embedscope.cli import analyze, check, curate, dashboard, ingest, query, text, verdicts
from embedscope.cli.ingest import ingest_settings
from embedscope.errors import EmbedscopeError

__all__ = ["build_parser", "ingest_settings", "main"]

GROUPS = (ingest, query, text, dashboard, analyze, verdicts, curate, check)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embedscope",
        description="Index image collections by their embeddings (DINOv2, SAM2-masked) in LanceDB, "
        "analyse them, and explore them in a dashboard.",
    )
    parser.add_argument("--version", action="version", version=f"embedscope {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
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
