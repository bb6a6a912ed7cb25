"""``search-text``: images by what a text describes, through a CLIP table; and the text
functions a SQL query may call (``text_vector``, ``similar_to_text``)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedscope.cli.common import add_db, add_output, emit, open_db


def text_vectors(args: argparse.Namespace) -> Any:
    """A :class:`~embedscope.ingest.embed_text.TextVectors` cache for one command."""
    from embedscope.ingest.embed_text import TextVectors

    return TextVectors(weights=getattr(args, "weights", None), device=getattr(args, "device", None) or "auto")


def sql_text_functions(db: Any, sql: str) -> dict[str, Any] | None:
    """SQL's text functions for ``embedscope query`` (None unless ``sql`` names them)."""
    return text_vectors(argparse.Namespace()).functions_for(db, sql)


def cmd_search_text(args: argparse.Namespace) -> int:
    from embedscope.ingest.embed_text import pick_text_model
    from embedscope.store.search import similar

    db = open_db(args)
    model = pick_text_model(db, args.model)
    vector = text_vectors(args).vector(db, args.text, model)
    print(f"searching {model} for {args.text!r}", file=sys.stderr)
    emit(similar(db, vector, k=args.k, model=model, where=args.where), args)
    return 0


def cmd_zero_shot(args: argparse.Namespace) -> int:
    """``analyze --zero-shot TAGS``: one ``kind='zero_shot'`` run over a CLIP table."""
    import json

    from embedscope.analysis.zero_shot import parse_tags, prompts, run_zero_shot
    from embedscope.ingest.embed_text import pick_text_model
    from embedscope.store.filters import eq
    from embedscope.store.runs import run_by_id

    db = open_db(args)
    model = pick_text_model(db, args.model)
    tags = parse_tags(args.zero_shot)
    tag_vectors = text_vectors(args).vectors(db, prompts(tags, args.prompt), model)
    run = run_by_id(db, run_zero_shot(db, model=model, tags=tags, prompt=args.prompt, tag_vectors=tag_vectors,
                                      variant=args.variant or "full"))
    counts = db.read("zero_shot", ["tag"], where=eq("run_id", run.run_id)).column("tag").to_pylist()
    summary = {tag: counts.count(tag) for tag in tags}
    print(f"zero_shot run {run.run_id}: {run.n_images} images of {model} tagged "
          f"({', '.join(f'{t} {n}' for t, n in summary.items())}); "
          f"{run.params['label_disagreements']} label disagreements", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": run.run_id, "kind": run.kind, "n_images": run.n_images, "tags": summary,
                          "label_disagreements": run.params["label_disagreements"]}))
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("search-text", help="images that match a text, through a CLIP model's table")
    add_db(p)
    p.add_argument("text", metavar="TEXT", help='what to look for, e.g. "a chest x-ray with a pacemaker"')
    p.add_argument("--model", help="which CLIP table (default: the only one)")
    p.add_argument("--k", type=int, default=20, help="how many images (default 20)")
    p.add_argument("--where", metavar="SQL", help="condition on images_latest columns, e.g. \"label = 'cats'\"")
    p.add_argument("--weights", help="default: what the table records (random, hub); a file needs PATH")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"])
    add_output(p)
    p.set_defaults(handler=cmd_search_text)
