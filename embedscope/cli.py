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
    p.add_argument("--db", required=True, metavar="DIR", help="database folder (or object-store URI, e.g. s3://bucket/prefix)")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="object-store setting in LanceDB's names (repeatable), e.g. aws_endpoint=http://HOST:9000; "
                        "on top of AWS_* and EMBEDSCOPE_STORAGE_OPTIONS (also used for s3:// drops)")


def _storage_options(args: argparse.Namespace) -> dict[str, str]:
    """EMBEDSCOPE_STORAGE_OPTIONS, then --storage-option on top (per key)."""
    import os

    from embedscope.objectstore import options_from_env, parse_options

    return {**options_from_env(os.environ), **parse_options(getattr(args, "storage_option", None))}


def _open_db(args: argparse.Namespace, *, create: bool = False) -> Any:
    from embedscope.store.db import Database

    return Database(args.db, create=create, storage_options=_storage_options(args))


def _add_query_embedding_options(p: argparse.ArgumentParser, title: str) -> None:
    """How to embed a query image the way the stored embeddings were made (`similar`, `dashboard`)."""
    g = p.add_argument_group(title)
    g.add_argument("--weights", help="default: what the table records (random, hub); a file needs PATH")
    g.add_argument("--image-size", type=int, help="model input side used at ingest (default 224)")
    g.add_argument("--preprocess", choices=["default", "xray"])
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--config", metavar="FILE", help="TOML file with an [ingest] section")


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
    p.add_argument("--decode", choices=["cpu", "gpu", "auto"],
                   help="where JPEG pixels are decoded: cpu (default; Pillow in the worker threads), "
                        "gpu (nvJPEG, batched, resized on the GPU; needs CUDA), auto (gpu when the encoder is on CUDA)")
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
    p.add_argument("--sam2-mask-mode", choices=["mean_fill", "crop"],
                   help="mean_fill (default): background set to the encoder's mean colour; "
                        "crop: also cut to the mask's box")
    p.add_argument("--config", metavar="FILE", help="TOML file with an [ingest] section")
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing the database, wait this long for it")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=None)


def ingest_settings(args: argparse.Namespace, drops: Sequence[str]) -> Any:
    from embedscope.config import IngestSettings, load_settings

    import dataclasses

    from embedscope.objectstore import as_items, parse_options

    flags = {k: v for k, v in vars(args).items()
             if k not in ("drops", "command", "handler", "config", "json", "wait_lock")}
    flags["drops"] = tuple(drops)
    settings = load_settings(IngestSettings, flags, section="ingest", config_file=args.config)
    if getattr(args, "storage_option", None):  # per key, over the env / TOML ones
        merged = {**settings.storage_option_dict(), **parse_options(args.storage_option)}
        settings = dataclasses.replace(settings, storage_options=as_items(merged))
    return settings


def cmd_ingest(args: argparse.Namespace) -> int:
    from embedscope.ingest.pipeline import run_ingest

    settings = ingest_settings(args, args.drops)
    summary = run_ingest(settings, wait_lock=args.wait_lock)
    print(summary.one_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.as_dict(), default=str))
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from embedscope.config import load_settings
    from embedscope.ingest.daemon import WatchSettings, run_watch

    settings = ingest_settings(args, args.drops)
    watch = load_settings(WatchSettings, vars(args), section="watch", config_file=args.config)
    totals = run_watch(settings, watch, wait_lock=args.wait_lock, json_lines=args.json)
    print(totals.one_line(), file=sys.stderr)
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    from embedscope.store.queries import stats

    result = stats(_open_db(args))
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


def _add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"],
                   help="default: from --out's extension, else table on a terminal and csv in a pipe")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of stdout")


def _emit(table: Any, args: argparse.Namespace, *, note: str = "") -> None:
    from embedscope.formats import choose_format, write_result

    fmt = choose_format(args.format, args.out, isatty=sys.stdout.isatty())
    write_result(table, fmt, args.out)
    if args.out:
        print(f"wrote {table.num_rows} rows to {args.out} ({fmt}){note}", file=sys.stderr)
    elif note:
        print(f"{table.num_rows} rows{note}", file=sys.stderr)


def cmd_query(args: argparse.Namespace) -> int:
    from embedscope.store.sql import is_truncated, run_sql

    table = run_sql(_open_db(args), args.sql, limit=args.limit or None)
    note = f" (stopped at --limit {args.limit} rows; --limit 0 for all)" if is_truncated(table) else ""
    _emit(table, args, note=note)
    return 0


def cmd_similar(args: argparse.Namespace) -> int:
    import os

    from embedscope.store.search import find_sha, similar

    db = _open_db(args)
    query: Any = args.query
    if find_sha(db, args.query) is None and os.path.isfile(args.query):
        query = _embed_query_file(db, args)
    table = similar(db, query, k=args.k, model=args.model, variant=args.variant, where=args.where)
    _emit(table, args)
    return 0


def _embed_query_file(db: Any, args: argparse.Namespace) -> Any:
    """Embed an image file that is not in the database with the table's model and weights."""
    from embedscope.ingest.embed_file import embed_files, query_settings, table_weights_label
    from embedscope.store.search import _pick_model

    model = _pick_model(db, args.model)
    label = table_weights_label(db, model, args.variant)
    flags = {"weights": args.weights, "device": args.device, "image_size": args.image_size, "preprocess": args.preprocess}
    settings = query_settings(model, label, flags, config_file=args.config)
    print(f"embedding {args.query} with {model} ({label}, image size {settings.image_size}, "
          f"preprocess {settings.preprocess})", file=sys.stderr)
    return embed_files([args.query], settings, variant=args.variant, expect_weights=label)[0]


def cmd_index(args: argparse.Namespace) -> int:
    from embedscope.store.index import INDEX_MIN_ROWS, build_index, drop_index

    db = _open_db(args)
    models = [args.model] if args.model else db.embedding_models()
    if not models:
        print(f"index: {args.db} has no embeddings yet; nothing to index", file=sys.stderr)
        return 0
    results = []
    with db.writer_lock(wait=args.wait_lock, owner="index"):
        for model in models:
            if args.drop:
                dropped = drop_index(db, model)
                results.append({"model": model, "action": "dropped" if dropped else "none"})
                continue
            print(f"index: {model} …", file=sys.stderr)
            res = build_index(db, model, force=args.force)
            results.append({"model": model, **res})
            p = res["params"]
            if res["action"] == "built":
                print(f"index: {model}: {p['index_type']} on {res['rows']} rows ({p['num_partitions']} partitions, "
                      f"{p['num_sub_vectors']}×{p['num_bits']}-bit PQ) in {res['seconds']:.1f}s", file=sys.stderr)
            else:
                print(f"index: {model}: skipped — {res['reason']} (threshold {INDEX_MIN_ROWS}; --force builds anyway)",
                      file=sys.stderr)
    if args.json:
        print(json.dumps(results))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from embedscope.models.registry import ENCODERS

    for name, cfg in sorted(ENCODERS.items()):
        print(f"{name:22} dim {cfg.dim:5}  timm {cfg.timm_name}  hub {cfg.hf_hub_id}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from embedscope.dashboard.app import create_app, is_loopback
    from embedscope.errors import ConfigError

    if args.auth is not None and (":" not in args.auth or not args.auth.split(":", 1)[0] or not args.auth.split(":", 1)[1]):
        raise ConfigError("--auth must be USER:PASSWORD", "e.g. --auth admin:$(openssl rand -hex 12)")
    if not is_loopback(args.host) and not args.auth:
        raise ConfigError(f"refusing to serve the dashboard on {args.host} without --auth",
                          "add --auth USER:PASSWORD (HTTP basic auth), or keep the default --host 127.0.0.1")
    query_flags = {"image_size": args.image_size, "preprocess": args.preprocess, "device": args.device,
                   "weights": args.weights}
    if args.config:  # a bad config file fails now, not at the first upload
        from embedscope.config import IngestSettings, load_settings

        load_settings(IngestSettings, {}, section="ingest", config_file=args.config)
    app = create_app(args.db, auth=args.auth, max_points=args.max_points, query_flags=query_flags,
                     query_config=args.config, storage_options=_storage_options(args))
    where = f"http://{args.host}:{args.port}/"
    print(f"embedscope dashboard: serving {args.db} read-only at {where}"
          f"{' (basic auth required)' if args.auth else ''} — Ctrl-C to stop", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=False)
def _csv(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")


def analysis_params(args: argparse.Namespace) -> Any:
    """AnalysisParams from the `analyze` flags (defaults live in AnalysisParams)."""
    from embedscope.analysis.duplicates import DuplicateConfig
    from embedscope.analysis.jobs import AnalysisParams
    from embedscope.analysis.novelty import NoveltyConfig
    from embedscope.errors import ConfigError

    kw: dict[str, Any] = {"model": args.model, "variant": args.variant}
    if args.project is not None:
        kw["project"] = _csv(args.project)
    if args.dims is not None:
        try:
            kw["dims"] = tuple(int(d) for d in _csv(args.dims))
        except ValueError:
            raise ConfigError(f"--dims {args.dims!r} is not a list of numbers", "use --dims 2, --dims 3 or --dims 2,3") from None
    if args.cluster is not None:
        kw["cluster"] = _csv(args.cluster)
    if args.k is not None and args.k != "auto":
        try:
            kw["k"] = int(args.k)
        except ValueError:
            raise ConfigError(f"--k {args.k!r} is neither a number nor 'auto'", "use --k auto or --k 8") from None
    for name in ("k_min", "k_max", "hdbscan_space", "hdbscan_dims", "min_cluster_size", "min_samples", "eps", "seed",
                 "holdout", "silhouette_sample", "fit_sample", "batch_size", "backend"):
        if getattr(args, name) is not None:
            kw[name] = getattr(args, name)
    nov: dict[str, Any] = {}
    if args.novelty_rule is not None:
        nov["rule"] = args.novelty_rule
    if args.novelty_z is not None:
        nov["z_threshold"] = args.novelty_z
    if args.novelty_percentile is not None:
        nov["percentile"] = args.novelty_percentile
    if args.knn_k is not None:
        nov["knn_k"] = args.knn_k
    if args.small_fraction is not None:
        nov["small_fraction"] = args.small_fraction
    kw["novelty"] = NoveltyConfig(**nov)
    dup: dict[str, Any] = {}
    if args.dup_cosine is not None:
        dup["cosine_threshold"] = args.dup_cosine
    if args.dup_hamming is not None:
        dup["hamming_threshold"] = args.dup_hamming
    kw["duplicates"] = DuplicateConfig(**dup)
    return AnalysisParams(**kw)


def cmd_analyze(args: argparse.Namespace) -> int:
    import time

    from dataclasses import asdict

    from embedscope.analysis.jobs import run_analysis, run_novelty_only
    from embedscope.errors import ConfigError
    from embedscope.store.runs import run_by_id

    db = _open_db(args)
    t0 = time.perf_counter()
    if args.novelty_only:
        run_id = run_novelty_only(db, since=args.since, model=args.model, variant=args.variant or "full",
                                  **({"batch_size": args.batch_size} if args.batch_size else {}))
        if run_id is None:
            print("novelty-only: nothing new to score", file=sys.stderr)
            if args.json:
                print(json.dumps({"run_id": None, "n_images": 0}))
            return 0
    else:
        if args.since is not None:
            raise ConfigError("--since only applies with --novelty-only", "add --novelty-only, or drop --since")
        run_id = run_analysis(db, analysis_params(args))
    run = asdict(run_by_id(db, run_id))
    summary = _run_summary(db, run)
    sampling = run["params"].get("sampling") or {}
    if sampling.get("statement"):
        backend = (run["params"].get("backend_resolved") or {}).get("name", "cpu")
        print(f"{run['kind']} run {run_id}: {sampling['statement']} (backend {backend})", file=sys.stderr)
    print(f"{run['kind']} run {run_id}: {run['n_images']} images of {run['model']}/{run['variant']}, "
          f"{summary['novel']} novel, {summary['contaminated']} contaminated, {summary['dup_groups']} near-duplicate "
          f"groups, in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": run_id, "kind": run["kind"], "n_images": run["n_images"], **summary,
                          **({"sampling": sampling} if sampling else {})}))
    return 0


def _run_summary(db: Any, run: dict[str, Any]) -> dict[str, int]:
    flags = db.read("flags", ["is_novel", "is_contaminated", "dup_group"], where=f"run_id = '{run['run_id']}'")
    dup = [g for g in flags.column("dup_group").to_pylist() if g is not None]
    return {"novel": sum(bool(v) for v in flags.column("is_novel").to_pylist()),
            "contaminated": sum(bool(v) for v in flags.column("is_contaminated").to_pylist()),
            "dup_groups": len(set(dup))}


def cmd_report(args: argparse.Namespace) -> int:
    from embedscope.analysis.report import write_report

    out = write_report(_open_db(args), run_id=args.run, out=args.out)
    print(f"report written to {out}", file=sys.stderr)
    return 0


def cmd_ingest_vectors(args: argparse.Namespace) -> int:
    from pathlib import Path

    from embedscope.analysis.vectors_import import import_vectors

    db = _open_db(args, create=True)
    with db.writer_lock(wait=args.wait_lock, owner="ingest-vectors"):
        summary = import_vectors(db, Path(args.file), model=args.model, ids_file=Path(args.ids) if args.ids else None,
                                 id_column=args.id_column, vector_column=args.vector_column,
                                 label_column=args.label_column or None)
    print(summary.one_line(), file=sys.stderr)
    if args.json:
        print(json.dumps(summary.__dict__))
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
    g = p.add_argument_group("scaling out (see README \"Scaling out\")")
    g.add_argument("--executor", choices=["local", "ray"],
                   help="local (default): threads in this process; ray: the same stages as Ray Data tasks and "
                        "encoder actors, rows written from this process")
    g.add_argument("--ray-address", metavar="ADDR",
                   help="Ray cluster to join: auto, ray://head:10001, ... (default: start a local one)")
    g.add_argument("--ray-workers", type=int, metavar="N",
                   help="encoder actors (default: one per GPU share, else one per --torch-threads CPUs (default 1))")
    g.add_argument("--num-gpus-per-worker", type=float, metavar="N",
                   help="GPUs per encoder actor (default 0: CPU actors)")
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("watch", help="ingest drops continuously (a daemon; SIGTERM/Ctrl-C stops it cleanly)",
                       description="Poll the drops and ingest new or changed files once they have stopped "
                       "changing, with the same pipeline as `ingest`. Safe to kill at any moment: a restart "
                       "finishes what was cut off. One watch per database (see --wait-lock).")
    p.add_argument("drops", nargs="+", metavar="DROP", help="folders to watch")
    _add_ingest_options(p)
    p.add_argument("--interval", type=float, metavar="SECONDS", help="seconds between polls (default 2)")
    p.add_argument("--settle", type=float, metavar="SECONDS",
                   help="a file must be unchanged this long, and across two polls, before it is read (default 2)")
    p.add_argument("--incomplete-grace", type=float, metavar="SECONDS",
                   help="hold a JPEG/PNG whose end is not written yet this long after its mtime (default 300)")
    p.add_argument("--heartbeat", type=float, metavar="SECONDS", help="seconds between 'alive' log lines (default 60)")
    p.add_argument("--max-files-per-batch", type=int, metavar="N",
                   help="files per pipeline run and writer-lock hold (default 256)")
    p.add_argument("--on-batch-analyze", type=int, metavar="N",
                   help="refresh novelty flags after every N new images (default 0: never)")
    p.add_argument("--optimize-every", type=float, metavar="SECONDS",
                   help="compact the tables the daemon writes at most this often (default 3600, 0: never)")
    p.set_defaults(handler=cmd_watch)

    p = sub.add_parser("stats", help="row counts of a database")
    _add_db(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_stats)

    p = sub.add_parser("query", help="run one read-only SQL SELECT over the tables (DuckDB)")
    _add_db(p)
    p.add_argument("sql", metavar="SQL", help='e.g. "SELECT label, count(*) FROM images GROUP BY label"')
    p.add_argument("--limit", type=int, default=10_000, help="at most this many rows (default 10000; 0 = all)")
    _add_output(p)
    p.set_defaults(handler=cmd_query)

    p = sub.add_parser("similar", help="nearest images by cosine distance to an image or sha256")
    _add_db(p)
    p.add_argument("query", metavar="IMAGE_PATH|SHA256",
                   help="a stored image's sha256 or path, or any image file (embedded on the fly)")
    p.add_argument("--k", type=int, default=10, help="how many neighbours (default 10)")
    p.add_argument("--model", help="which model's embeddings (default: the only one)")
    p.add_argument("--variant", default="full", choices=["full", "sam2_masked", "patch_mean"])
    p.add_argument("--where", metavar="SQL", help="condition on images_latest columns, e.g. \"label = 'cats'\"")
    _add_output(p)
    _add_query_embedding_options(p, "embedding a file that is not in the database (match the ingest)")
    p.set_defaults(handler=cmd_similar)

    p = sub.add_parser("index", help="build the ANN vector index of each embeddings table (if large enough)")
    _add_db(p)
    p.add_argument("--model", help="only this model's table (default: all)")
    p.add_argument("--force", action="store_true", help="build even below the size threshold")
    p.add_argument("--drop", action="store_true", help="remove the index (searches become exact)")
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing the database, wait this long for it")
    p.add_argument("--json", action="store_true", help="print what was done as JSON on stdout")
    p.set_defaults(handler=cmd_index)

    p = sub.add_parser("models", help="list the registered encoders")
    p.set_defaults(handler=cmd_models)

    p = sub.add_parser("dashboard", help="serve the Dash dashboard for a database (read-only)")
    _add_db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else needs --auth)")
    p.add_argument("--port", type=int, default=8050, help="default 8050")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require HTTP basic auth (mandatory off loopback)")
    p.add_argument("--max-points", type=int, default=150_000,
                   help="the map shows a fixed random sample beyond this many points (default 150000)")
    _add_query_embedding_options(p, "embedding an uploaded image on the Search page (match the ingest, as for `similar`)")
    p.set_defaults(handler=cmd_dashboard)
    p = sub.add_parser("analyze", help="cluster, project, score novelty/contamination/near-duplicates; store a run")
    _add_db(p)
    p.add_argument("--model", help="embeddings to analyse (default: the only model in the database)")
    p.add_argument("--variant", choices=["full", "sam2_masked", "patch_mean"],
                   help="default: full if present, else the only one")
    p.add_argument("--project", metavar="LIST", help="projections, comma-separated: umap,tsne,pca or none (default umap)")
    p.add_argument("--dims", metavar="LIST", help="projection dims: 2, 3 or 2,3 (default 2)")
    p.add_argument("--cluster", metavar="LIST",
                   help="clusterings, comma-separated, the first is the primary: hdbscan,kmeans,kmedoids,agglomerative,dbscan "
                        "(default hdbscan,kmeans)")
    p.add_argument("--k", metavar="N|auto", help="clusters for kmeans/kmedoids/agglomerative (default auto: best silhouette)")
    p.add_argument("--k-min", type=int, help="auto k range start (default 2)")
    p.add_argument("--k-max", type=int, help="auto k range end (default 15)")
    p.add_argument("--hdbscan-space", choices=["umap", "pca"], help="reduced space for hdbscan/dbscan (default umap)")
    p.add_argument("--hdbscan-dims", type=int, help="dims of that space (default 10)")
    p.add_argument("--min-cluster-size", type=int, help="HDBSCAN (default max(5, min(50, N/100)))")
    p.add_argument("--min-samples", type=int, help="HDBSCAN/DBSCAN (default 5)")
    p.add_argument("--eps", type=float, help="DBSCAN radius (default: 90th percentile of the k-NN distance)")
    p.add_argument("--seed", type=int, help="seed for every random step (default 0)")
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help="fit on the rest and score this fraction against it (default 0)")
    p.add_argument("--silhouette-sample", type=int, help="rows the silhouette is computed on (default 5000)")
    p.add_argument("--fit-sample", type=int, metavar="N",
                   help="above N rows, fit every method on a seeded sample of N and place the rest by transform / "
                        "predict / approximate_predict in a streaming pass (default 200000; 0 = always fit every row)")
    p.add_argument("--batch-size", type=int, metavar="N",
                   help="rows per batch of that streaming pass (default 16384)")
    p.add_argument("--backend", choices=["auto", "cpu", "cuml"],
                   help="UMAP/HDBSCAN/k-means on RAPIDS cuML (GPU) or the CPU; auto = cuML when it is installed and "
                        "a CUDA GPU is present (default auto)")
    p.add_argument("--knn-k", type=int, help="neighbours for the kNN novelty component (default 10)")
    p.add_argument("--novelty-rule", choices=["zscore", "percentile"], help="how is_novel is decided (default zscore)")
    p.add_argument("--novelty-z", type=float, help="zscore rule threshold (default 3.0)")
    p.add_argument("--novelty-percentile", type=float, help="percentile rule threshold (default 99)")
    p.add_argument("--small-fraction", type=float, help="contamination: a cluster this small or smaller (default 0.05)")
    p.add_argument("--dup-cosine", type=float, help="near-duplicate cosine distance threshold (default 0.03)")
    p.add_argument("--dup-hamming", type=int, help="perceptual-hash Hamming threshold (default 6)")
    p.add_argument("--novelty-only", action="store_true",
                   help="score new images against the latest analyze run without refitting")
    p.add_argument("--since", metavar="RUN|TIMESTAMP",
                   help="with --novelty-only: images embedded after this run or time (default: not yet scored)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(handler=cmd_analyze)

    p = sub.add_parser("report", help="write an HTML report of an analyze run (tables, curves, dendrogram, plots)")
    _add_db(p)
    p.add_argument("--run", metavar="RUN", help="run id (default: the latest analyze run)")
    p.add_argument("--out", default="report.html", metavar="FILE", help="output HTML file (default report.html)")
    p.set_defaults(handler=cmd_report)

    p = sub.add_parser("ingest-vectors", help="import precomputed embeddings (Parquet, or .npy + --ids)")
    p.add_argument("file", metavar="FILE", help=".parquet, or .npy with --ids")
    _add_db(p)
    p.add_argument("--model", required=True, help="name to store the vectors under")
    p.add_argument("--ids", metavar="FILE", help="for .npy: text file, one id per line, in row order")
    p.add_argument("--id-column", default="id", help="Parquet id column (default id)")
    p.add_argument("--vector-column", default="vector", help="Parquet vector column (default vector)")
    p.add_argument("--label-column", default="label", help="Parquet label column, if present (default label)")
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing the database, wait this long for it")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.set_defaults(handler=cmd_ingest_vectors)

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
