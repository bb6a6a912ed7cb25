"""`tag` and `export`: the curator's tags (an append-only log) and the curated dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from embedscope.cli.common import add_db, add_wait_lock, open_db


def cmd_tag(args: argparse.Namespace) -> int:
    from embedscope.store import tags as T

    db = open_db(args)
    source = "cli"
    if args.where is not None:
        shas = T.shas_where(db, args.where)
    elif args.from_sql is not None:
        shas, source = T.shas_from_sql(db, args.from_sql), "sql-result"
    elif args.paths_file is not None:
        shas = T.shas_of_paths(db, Path(args.paths_file).read_text(encoding="utf-8").splitlines())
    else:
        shas = args.sha
    n = T.tag_images(db, shas, args.tag, note=args.note, remove=args.remove, source=source,
                     wait_lock=args.wait_lock)
    print(f"{'untagged' if args.remove else 'tagged'} {n} image(s) {args.tag!r}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from embedscope.store.export import export

    db = open_db(args)
    result = export(db, args.out, fmt=args.format, exclude_tags=_csv(args.exclude_tags),
                    exclude_flags=_csv(args.exclude_flags), where=args.where)
    print(f"export: {result.summary()}")
    return 0


def _csv(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def register(sub: Any) -> None:
    p = sub.add_parser("tag", help="tag or untag images in bulk (exclude, keep, reviewed, relabel:<label>, any name)")
    add_db(p)
    p.add_argument("--tag", required=True, help="the tag, e.g. exclude, keep, reviewed, relabel:cats, or a selection name")
    p.add_argument("--remove", action="store_true", help="remove the tag instead of adding it")
    p.add_argument("--note", help="why (kept in the log; the export lists it as the reason's detail)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--where", metavar="SQL", help="a condition over images_latest, e.g. \"label = 'cats' AND is_novel\"")
    which.add_argument("--sha", nargs="+", metavar="SHA", help="sha256 of the images")
    which.add_argument("--paths-file", metavar="FILE", help="a file with one path (as in sources) or sha256 per line")
    which.add_argument("--from-sql", metavar="SELECT", help="a read-only SELECT returning a sha256 column")
    add_wait_lock(p)
    p.set_defaults(handler=cmd_tag)

    p = sub.add_parser("export", help="write the curated dataset: kept images (every path, relabelled) and the excluded list")
    add_db(p)
    p.add_argument("--out", required=True, metavar="DIR|FILE",
                   help="a folder (kept.* and excluded.*), or a .csv/.parquet file (excluded list beside it)")
    p.add_argument("--format", choices=["csv", "parquet", "imagefolder"], default="csv",
                   help="imagefolder: DIR/<label>/<file> hard links for torchvision's ImageFolder (default csv)")
    p.add_argument("--exclude-tags", default="exclude", metavar="TAGS",
                   help="comma-separated tags that leave an image out (default exclude; '' for none)")
    p.add_argument("--exclude-flags", default="", metavar="FLAGS",
                   help="comma-separated: exact_dup,near_dup,novel,contaminated,label_conflict,leak,low_quality "
                        "(default none); a keep tag overrides them, a not_dup tag dismisses a near-duplicate pair")
    p.add_argument("--where", metavar="SQL", help="only consider images_latest rows matching this condition")
    p.set_defaults(handler=cmd_export)
