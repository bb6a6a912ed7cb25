"""`check`: find (and with ``--repair`` remove) what a killed writer left in a database."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from embedscope.cli.common import add_db, add_wait_lock, open_db


def cmd_check(args: argparse.Namespace) -> int:
    from embedscope.store.check import check, repair

    db = open_db(args)
    grace = {} if args.grace is None else {"grace_s": args.grace}
    report = repair(db, wait_lock=args.wait_lock, **grace) if args.repair else check(db, **grace)
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(f"check {args.db}: {report.summary()}")
        for table, n in {**report.orphan_embeddings, **report.orphan_results}.items():
            print(f"  {table}: {n} orphan rows")
        if report.stale_quarantine:
            print(f"  quarantine: {report.stale_quarantine} stale rows")
        for run_id in report.pending_runs:
            print(f"  run {run_id}: results but no runs row yet (younger than --grace; left alone)")
        for table, n in report.index_unindexed.items():
            print(f"  {table}: {n} rows outside the ANN index")
        for table, n in report.fragments.items():
            print(f"  {table}: {n} fragments to compact")
        for action in report.actions:
            print(f"  {action}")
        if report.problems and not args.repair:
            print(f"check: `embedscope check --db {args.db} --repair` removes them", file=sys.stderr)
    return 1 if report.problems and not args.repair else 0


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="find orphan rows a killed ingest/analyze left (--repair removes them)")
    add_db(p)
    p.add_argument("--repair", action="store_true",
                   help="delete orphans and stale quarantine rows, update the ANN index, compact (takes the writer lock)")
    p.add_argument("--grace", type=float, metavar="SECONDS",
                   help="result rows of a run younger than this may be an analyze still writing: left alone "
                        "(default one day, store.check.DEFAULT_GRACE_S; 0 when no analyze is running)")
    add_wait_lock(p)
    p.add_argument("--json", action="store_true", help="the report as JSON on stdout")
    p.set_defaults(handler=cmd_check)
