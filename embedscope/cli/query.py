"""`stats`, `query`, `similar`, `index` and `models`: reading a database and its vectors."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from embedscope.cli.common import add_db, add_output, add_query_embedding_options, add_wait_lock, emit, open_db


def cmd_stats(args: argparse.Namespace) -> int:
    from embedscope.store.queries import stats
    from embedscope.store.review import label_conflict_count

    db = open_db(args)
    result = stats(db)
    result["label_conflicts"] = label_conflict_count(db)  # contents seen under more than one label
    if args.json:
        print(json.dumps(result))
        return 0
    for key, value in result.items():
        if key == "label_conflicts":
            print(f"label conflicts: {value} images")
        elif isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        else:
            print(f"{key}: {value}")
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    from embedscope.cli.text import sql_text_functions
    from embedscope.store.sql import is_truncated, run_sql

    db = open_db(args)
    table = run_sql(db, args.sql, limit=args.limit or None, limits=sql_limits(args),
                    functions=sql_text_functions(db, args.sql))
    note = f" (stopped at --limit {args.limit} rows; --limit 0 for all)" if is_truncated(table) else ""
    emit(table, args, note=note)
    return 0


def sql_limits(args: argparse.Namespace, prefix: str = "") -> Any:
    """The :class:`SqlLimits` of ``--timeout`` / ``--memory-limit`` / ``--spill-limit`` (0 or
    "none": no limit), with ``prefix`` (e.g. ``sql-``) on the flag names."""
    import dataclasses

    from embedscope.store.sql import CLI_LIMITS, DASHBOARD_LIMITS

    base = DASHBOARD_LIMITS if prefix else CLI_LIMITS
    name = prefix.replace("-", "_")
    timeout = getattr(args, f"{name}timeout")
    return dataclasses.replace(base, timeout_s=timeout or None,
                               memory_limit=_size_or_none(getattr(args, f"{name}memory_limit")),
                               temp_limit=_size_or_none(getattr(args, f"{name}spill_limit")))


def add_sql_limits(p: argparse.ArgumentParser, prefix: str = "") -> None:
    """``--timeout``, ``--memory-limit``, ``--spill-limit`` (with ``prefix``): one query's limits."""
    from embedscope.store.sql import CLI_LIMITS, DASHBOARD_LIMITS

    base = DASHBOARD_LIMITS if prefix else CLI_LIMITS
    p.add_argument(f"--{prefix}timeout", type=float, default=base.timeout_s, metavar="SECONDS",
                   help=f"stop a query after this long (default {base.timeout_s:g}; 0 = no limit)")
    p.add_argument(f"--{prefix}memory-limit", default=base.memory_limit, metavar="SIZE",
                   help=f"DuckDB memory limit of a query, e.g. 4GB (default {base.memory_limit}; none = DuckDB's 80%% of RAM)")
    p.add_argument(f"--{prefix}spill-limit", default=base.temp_limit, metavar="SIZE",
                   help=f"at most this much spilled to a private temp folder (default {base.temp_limit}; 0 = no spilling)")


def _size_or_none(value: str | None) -> str | None:
    """A DuckDB size (``500MB``, ``2GiB``; ``0`` → ``0B``), or None for ``none``."""
    import re

    from embedscope.errors import ConfigError

    text = (value or "").strip()
    if text.lower() in ("", "none"):
        return None
    if text == "0":
        return "0B"
    if not re.fullmatch(r"\d+(\.\d+)?\s*([KMGT]i?)?B", text, flags=re.IGNORECASE):
        raise ConfigError(f"bad size {value!r}", "use e.g. 500MB, 2GB, 0, or none")
    return text


def cmd_similar(args: argparse.Namespace) -> int:
    from embedscope.store.search import find_sha, similar
    from embedscope.store.search_cache import SearchIndexCache

    db = open_db(args)
    query: Any = args.query
    if find_sha(db, args.query) is None and os.path.isfile(args.query):
        query = _embed_query_file(db, args)
    # one search per process: the graph is used when `embedscope index` saved one (topped up if stale)
    cache = SearchIndexCache(recheck_s=0.0, build=False)
    emit(similar(db, query, k=args.k, model=args.model, variant=args.variant, where=args.where, cache=cache), args)
    return 0


def _embed_query_file(db: Any, args: argparse.Namespace) -> Any:
    """Embed an image file that is not in the database with the table's model and weights."""
    from embedscope.ingest.embed_file import embed_files, query_settings, table_weights_label
    from embedscope.store.search import pick_model

    model = pick_model(db, args.model)
    label = table_weights_label(db, model, args.variant)
    flags = {"weights": args.weights, "device": args.device, "image_size": args.image_size, "preprocess": args.preprocess}
    settings = query_settings(model, label, flags, config_file=args.config)
    print(f"embedding {args.query} with {model} ({label}, image size {settings.image_size}, "
          f"preprocess {settings.preprocess})", file=sys.stderr)
    return embed_files([args.query], settings, variant=args.variant, expect_weights=label)[0]


def cmd_index(args: argparse.Namespace) -> int:
    from embedscope.store.graph_index import build_graphs, drop_graphs
    from embedscope.store.graph_recall import describe
    from embedscope.store.index import INDEX_MIN_ROWS, build_index, drop_index

    db = open_db(args)
    models = [args.model] if args.model else db.embedding_models()
    if not models:
        print(f"index: {args.db} has no embeddings yet; nothing to index", file=sys.stderr)
        return 0
    results = []
    with db.writer_lock(wait=args.wait_lock, owner="index"):
        for model in models:
            if args.drop:
                dropped = drop_index(db, model)
                drop_graphs(db, model)
                results.append({"model": model, "action": "dropped" if dropped else "none"})
                continue
            print(f"index: {model} …", file=sys.stderr)
            res = build_index(db, model, force=args.force, index_type=args.type)
            p = res["params"]
            if res["action"] == "built":
                codes = (f"{p['num_sub_vectors']}×{p['num_bits']}-bit PQ" if p["index_type"] == "IVF_PQ"
                         else f"HNSW M {p['m']}, 8-bit SQ")
                print(f"index: {model}: {p['index_type']} on {res['rows']} rows ({p['num_partitions']} partitions, "
                      f"{codes}) in {res['seconds']:.1f}s", file=sys.stderr)
            else:
                print(f"index: {model}: skipped — {res['reason']} (threshold {INDEX_MIN_ROWS}; --force builds anyway)",
                      file=sys.stderr)
            res["graph"] = build_graphs(db, model, min_rows=0 if args.force else INDEX_MIN_ROWS)
            for g in res["graph"]:
                if g["action"] != "skipped":
                    print(f"index: {model}/{g['variant']}: in-memory graph {g['action']} ({g['rows']} rows, "
                          f"{g['bytes_per_vector']:.0f} bytes per vector; {describe(g['calibration'])})", file=sys.stderr)
            results.append({"model": model, **res})
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from embedscope.models.registry import ENCODERS

    for name, cfg in sorted(ENCODERS.items()):
        print(f"{name:22} {cfg.family:8} dim {cfg.dim:5}  arch {cfg.arch}  hub {cfg.hf_hub_id}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("stats", help="row counts of a database")
    add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("query", help="run one read-only SQL SELECT over the tables (DuckDB)")
    add_db(p)
    p.add_argument("sql", metavar="SQL", help='e.g. "SELECT label, count(*) FROM images GROUP BY label"')
    p.add_argument("--limit", type=int, default=10_000, help="at most this many rows (default 10000; 0 = all)")
    add_sql_limits(p)
    add_output(p)
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("similar", help="nearest images by cosine distance to an image or sha256")
    add_db(p)
    p.add_argument("query", metavar="IMAGE_PATH|SHA256",
                   help="a stored image's sha256 or path, or any image file (embedded on the fly)")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--model", help="which model's embeddings (default: the only one)")
    p.add_argument("--variant", default="full", choices=["full", "sam2_masked", "patch_mean"])
    p.add_argument("--where", metavar="SQL", help="condition on images_latest columns, e.g. \"label = 'cats'\"")
    add_output(p)
    add_query_embedding_options(p, "embedding a file that is not in the database (match the ingest)")
    p.set_defaults(handler=cmd_similar)

    p = sub.add_parser("index", help="build the ANN vector index and the in-memory search graph of each embeddings table (if large enough)")
    add_db(p)
    p.add_argument("--model", help="only this model's table (default: all)")
    p.add_argument("--force", action="store_true", help="build even below the size threshold")
    p.add_argument("--drop", action="store_true", help="remove the index and the saved graphs (searches become exact)")
    p.add_argument("--type", choices=["IVF_PQ", "IVF_HNSW_SQ"], default="IVF_PQ",
                   help="the Lance index kind (default IVF_PQ; docs/benchmarks.md compares them)")
    add_wait_lock(p)
    p.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("models", help="list the registered encoders")
    p.set_defaults(handler=cmd_models)
