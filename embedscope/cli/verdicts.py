"""Arrival verdicts from the command line: the options `ingest` and `watch` share, the
checks they run after their batches, and `verdicts` (the whole table as one drop).
See docs/verdicts.md."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Callable, Sequence

from embedscope.cli.common import add_db, add_wait_lock, open_db
from embedscope.errors import ConfigError

VERDICT_FLAGS = ("verdicts", "split_from", "near_z", "near_cosine", "novel_z", "report_dir")
"""The `ingest`/`watch` flags that are not IngestSettings (left out of the settings)."""


def add_verdict_options(p: argparse.ArgumentParser, *, switch: bool = True) -> None:
    g = p.add_argument_group("arrival verdicts (docs/verdicts.md)")
    if switch:
        g.add_argument("--no-verdicts", dest="verdicts", action="store_false", default=True,
                       help="do not judge the arrived images (new, exact_dup, near_dup, leak, ...)")
    g.add_argument("--split-from", default="folder", metavar="RULE",
                   help="each path's split: folder (a folder named train/val/test/...), regex:<re> (its first "
                        "group), column:<name> (a sources column, e.g. drop, or an images column, e.g. label), "
                        "or none (default folder); a duplicate across splits is a leak")
    g.add_argument("--near-z", type=float, default=4.0, metavar="Z",
                   help="near duplicate: nearest-neighbour distance this many robust SDs below the table's "
                        "median (default 4; the threshold comes from the data)")
    g.add_argument("--near-cosine", type=float, default=None, metavar="D",
                   help="override the calibration with a fixed cosine-distance threshold")
    g.add_argument("--novel-z", type=float, default=4.0, metavar="Z",
                   help="novel: nearest stored image this many robust SDs farther than usual (default 4)")


def verdict_config(args: argparse.Namespace) -> Any:
    from embedscope.analysis.verdicts import VerdictConfig

    return VerdictConfig(near_z=args.near_z, near_cosine=args.near_cosine, novel_z=args.novel_z,
                         split_from=args.split_from)


def check_ingested(settings: Any, arrived: list, *, model: str, args: argparse.Namespace, wait_lock: float) -> Any:
    """`ingest`'s check of the (sha256, path) rows its run added to ``sources``."""
    from embedscope.analysis.jobs import check_arrivals
    from embedscope.store.db import Database

    db = Database(settings.db, storage_options=settings.storage_option_dict())
    with db.writer_lock(wait=wait_lock, owner="ingest"):
        return check_arrivals(db, arrived, model=model, config=verdict_config(args),
                              label_from_folder=settings.label_from_folder, kind="ingest", sources=settings.drops)


def watch_callback(args: argparse.Namespace, *, label_from_folder: bool,
                   drops: Sequence[str]) -> Callable[[Any, str, list[str]], dict[str, Any]] | None:
    """The daemon's per-batch check (the daemon, in ingest, may not import analysis); with
    ``--report-dir`` each checked batch also leaves ``<drop_id>.html`` and ``.json`` there."""
    report_dir = getattr(args, "report_dir", None)
    if not args.verdicts:
        if report_dir:
            raise ConfigError("--report-dir needs the verdicts: drop --no-verdicts")
        return None
    config = verdict_config(args)
    caches: list[Any] = []  # the graph index, kept in memory from one batch to the next

    def check(db: Any, model: str, paths: list[str]) -> dict[str, Any]:
        from embedscope.analysis.arrival_data import arrived_at
        from embedscope.analysis.arrival_graph import verdict_index_cache
        from embedscope.analysis.jobs import check_arrivals

        caches[:] = caches or [verdict_index_cache()]
        result = check_arrivals(db, arrived_at(db, paths), model=model, config=config,
                                label_from_folder=label_from_folder, kind="watch", sources=drops,
                                index_cache=caches[0])
        fields = {"drop_id": result.drop_id, "counts": result.counts}
        if report_dir and result.drop_id:
            fields["report"] = str(write_batch_report(db, result.drop_id, report_dir))
        return fields

    return check


def write_batch_report(db: Any, drop_id: str, report_dir: str) -> Any:
    """``<report_dir>/<drop_id>.html`` and ``.json`` beside it; returns the HTML's path."""
    from pathlib import Path

    from embedscope.analysis.drop_report import write_drop_report

    out = Path(report_dir).expanduser() / f"{drop_id}.html"
    write_drop_report(db, drop=drop_id, out=out.with_suffix(".json"), as_json=True)
    return write_drop_report(db, drop=drop_id, out=out)


def cmd_verdicts(args: argparse.Namespace) -> int:
    from embedscope.analysis.jobs import check_table
    from embedscope.store.runs import resolve_model_variant

    db = open_db(args)
    model, variant = resolve_model_variant(db, args.model, args.variant)
    with db.writer_lock(wait=args.wait_lock, owner="verdicts"):
        result = check_table(db, model=model, variant=variant, config=verdict_config(args),
                             label_from_folder=args.label_from_folder)
    print(result.one_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(vars(result), default=str))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("verdicts", help="judge every stored image as one drop: duplicates, label conflicts, "
                       "leaks, low quality (docs/verdicts.md)")
    add_db(p)
    p.add_argument("--model", help="encoder whose embeddings to compare (default: the only/first one)")
    p.add_argument("--variant", help="embedding variant (default full)")
    p.add_argument("--label-from-folder", action="store_true",
                   help="each path's parent folder is its label (label conflicts need labels)")
    add_verdict_options(p, switch=False)
    add_wait_lock(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    p.set_defaults(handler=cmd_verdicts)
