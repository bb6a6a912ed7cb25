"""`analyze` and `report`: analysis runs over stored embeddings.

Settings come from flags > ``EMBEDSCOPE_ANALYZE_*`` env vars > the TOML ``[analyze]`` section
(``[analyze.novelty]``, ``[analyze.duplicates]`` for those two groups) > the defaults of
:class:`AnalysisParams`, like ingest's settings.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from embedscope.cli.common import add_db, csv_list, int_list, open_db, with_default

ENV_PREFIX = "EMBEDSCOPE_ANALYZE_"

# flag dest -> field of NoveltyConfig / DuplicateConfig
NOVELTY_FLAGS = {"knn_k": "knn_k", "novelty_rule": "rule", "novelty_z": "z_threshold",
                 "novelty_percentile": "percentile", "small_fraction": "small_fraction"}
DUPLICATE_FLAGS = {"dup_cosine": "cosine_threshold", "dup_hamming": "hamming_threshold"}
TOP_FLAGS = ("model", "variant", "k_min", "k_max", "hdbscan_space", "hdbscan_dims", "min_cluster_size", "min_samples",
             "eps", "seed", "holdout", "silhouette_sample", "fit_sample", "batch_size", "backend",
             "reproducible_max")


def analysis_params(args: argparse.Namespace) -> Any:
    """AnalysisParams from the `analyze` flags, env, TOML and defaults."""
    from embedscope.analysis.duplicates import DuplicateConfig
    from embedscope.analysis.params import AnalysisParams
    from embedscope.analysis.novelty import NoveltyConfig
    from embedscope.config import load_settings
    from embedscope.errors import ConfigError

    config = getattr(args, "config", None)

    def load(cls: Any, flags: dict[str, Any], section: str, prefix: str) -> Any:
        return load_settings(cls, flags, section=section, config_file=config, env_prefix=prefix)

    novelty = load(NoveltyConfig, {f: getattr(args, d) for d, f in NOVELTY_FLAGS.items()},
                   "analyze.novelty", ENV_PREFIX + "NOVELTY_")
    duplicates = load(DuplicateConfig, {f: getattr(args, d) for d, f in DUPLICATE_FLAGS.items()},
                      "analyze.duplicates", ENV_PREFIX + "DUPLICATES_")
    flags: dict[str, Any] = {name: getattr(args, name) for name in TOP_FLAGS}
    flags.update(novelty=novelty, duplicates=duplicates)
    if args.project is not None:
        flags["project"] = csv_list(args.project)
    if args.cluster is not None:
        flags["cluster"] = csv_list(args.cluster)
    if args.dims is not None:
        flags["dims"] = int_list(args.dims, "--dims", "2,3")
    if args.k is not None and args.k != "auto":
        try:
            flags["k"] = int(args.k)
        except ValueError:
            raise ConfigError(f"--k {args.k!r} is neither a number nor 'auto'", "use --k auto or --k 8") from None
    return load(AnalysisParams, flags, "analyze", ENV_PREFIX)


def cmd_analyze(args: argparse.Namespace) -> int:
    from embedscope.analysis.jobs import run_analysis, run_novelty_only
    from embedscope.errors import ConfigError
    from embedscope.store.runs import run_by_id

    if args.zero_shot is not None:
        from embedscope.cli.text import cmd_zero_shot

        return cmd_zero_shot(args)
    db = open_db(args)
    t0 = time.perf_counter()
    if args.novelty_only:
        if args.since is not None:
            _check_since(db, args.since)
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
    run = run_by_id(db, run_id)
    summary = _run_summary(db, run)
    sampling = run.params.get("sampling") or {}
    if sampling.get("statement"):
        backend = (run.params.get("backend_resolved") or {}).get("name", "cpu")
        print(f"{run.kind} run {run_id}: {sampling['statement']} (backend {backend})", file=sys.stderr)
    print(f"{run.kind} run {run_id}: {run.n_images} images of {run.model}/{run.variant}, "
          f"{summary['novel']} novel, {summary['contaminated']} contaminated, {summary['dup_groups']} near-duplicate "
          f"groups, in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    if args.json:
        print(json.dumps({"run_id": run_id, "kind": run.kind, "n_images": run.n_images, **summary,
                          **({"sampling": sampling} if sampling else {})}))
    return 0


def _check_since(db: Any, since: str) -> None:
    """``--since`` is an ISO timestamp or the id of a stored run; anything else fails here, in one
    line naming the known run ids."""
    import datetime as dt

    from embedscope.store.runs import UnknownRunError, run_by_id

    try:
        dt.datetime.fromisoformat(since)
        return
    except ValueError:
        pass
    try:
        run_by_id(db, since)
    except UnknownRunError as exc:
        raise UnknownRunError(f"--since {since!r} is neither a run id nor an ISO timestamp (e.g. 2026-01-01T12:00:00Z)",
                              exc.hint) from None


def _run_summary(db: Any, run: Any) -> dict[str, int]:
    from embedscope.store.filters import eq

    flags = db.read("flags", ["is_novel", "is_contaminated", "dup_group"], where=eq("run_id", run.run_id))
    dup = [g for g in flags.column("dup_group").to_pylist() if g is not None]
    return {"novel": sum(bool(v) for v in flags.column("is_novel").to_pylist()),
            "contaminated": sum(bool(v) for v in flags.column("is_contaminated").to_pylist()),
            "dup_groups": len(set(dup))}


def cmd_report(args: argparse.Namespace) -> int:
    from embedscope.store.runs import run_by_id

    db = open_db(args)
    if args.drop:
        from embedscope.analysis.drop_report import write_drop_report
        from embedscope.errors import ConfigError

        if args.run:
            raise ConfigError("--drop and --run: one report at a time")
        default = "drop-report.json" if args.json else "drop-report.html"
        out = write_drop_report(db, drop=args.drop, out=args.out or default, as_json=args.json)
        print(f"drop report written to {out}", file=sys.stderr)
        return 0
    if args.run:
        run_by_id(db, args.run)  # an unknown id fails here, naming the known ones
    from embedscope.analysis.report import write_report

    out = write_report(db, run_id=args.run, out=args.out or "report.html")
    print(f"report written to {out}", file=sys.stderr)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("analyze", help="cluster, project, score novelty/contamination/near-duplicates; store a run",
                       description="Settings: flags > EMBEDSCOPE_ANALYZE_<SETTING> env vars (novelty ones "
                       "EMBEDSCOPE_ANALYZE_NOVELTY_<SETTING>, duplicate ones EMBEDSCOPE_ANALYZE_DUPLICATES_<SETTING>) "
                       "> the --config TOML's [analyze], [analyze.novelty], [analyze.duplicates] > defaults.")
    add_db(p)
    _add_analyze_options(p)
    p.set_defaults(handler=cmd_analyze)

    p = sub.add_parser("report", help="write an HTML report of an analyze run (tables, curves, dendrogram, plots)")
    add_db(p)
    p.add_argument("--run", metavar="RUN", help="run id (default: the latest analyze run)")
    p.add_argument("--drop", metavar="latest|ID",
                   help="instead of a run: the verdicts of one checked drop (docs/verdicts.md)")
    p.add_argument("--json", action="store_true", help="with --drop: write JSON instead of HTML")
    p.add_argument("--out", metavar="FILE",
                   help="output file (default report.html; with --drop drop-report.html or .json)")
    p.set_defaults(handler=cmd_report)


def _add_analyze_options(p: argparse.ArgumentParser) -> None:
    """The `analyze` flags; their defaults and choices are read from the analysis classes."""
    from embedscope.analysis.backend import BACKENDS
    from embedscope.analysis.clustering import cluster_method_names
    from embedscope.analysis.duplicates import DuplicateConfig
    from embedscope.analysis.novelty import NoveltyConfig
    from embedscope.analysis.params import AnalysisParams
    from embedscope.analysis.projection import PROJECTION_METHODS

    def dflt(text: str, name: str, shown: Any = None, cls: Any = AnalysisParams) -> str:
        return with_default(text, cls, name, shown)

    p.add_argument("--model", help="embeddings to analyse (default: the only model in the database)")
    p.add_argument("--variant", choices=["full", "sam2_masked", "patch_mean"],
                   help="default: full if present, else the only one")
    p.add_argument("--project", metavar="LIST",
                   help=dflt(f"projections, comma-separated: {','.join(PROJECTION_METHODS)} or none", "project"))
    p.add_argument("--dims", metavar="LIST", help=dflt("projection dims: 2, 3 or 2,3", "dims"))
    p.add_argument("--cluster", metavar="LIST",
                   help=dflt(f"clusterings, comma-separated, the first is the primary: {','.join(cluster_method_names())}",
                             "cluster"))
    p.add_argument("--k", metavar="N|auto", help=dflt("clusters for the methods that take k", "k",
                                                      "auto: best silhouette over --k-min..--k-max"))
    p.add_argument("--k-min", type=int, help=dflt("auto k range start", "k_min"))
    p.add_argument("--k-max", type=int, help=dflt("auto k range end", "k_max", "min(60, max(15, sqrt(N)/2))"))
    p.add_argument("--hdbscan-space", choices=["umap", "pca"], help=dflt("reduced space for hdbscan/dbscan", "hdbscan_space"))
    p.add_argument("--hdbscan-dims", type=int, help=dflt("dims of that space", "hdbscan_dims"))
    p.add_argument("--min-cluster-size", type=int, help=dflt("HDBSCAN", "min_cluster_size", "max(5, min(50, N/100))"))
    p.add_argument("--min-samples", type=int, help=dflt("HDBSCAN/DBSCAN", "min_samples"))
    p.add_argument("--eps", type=float, help=dflt("DBSCAN radius", "eps", "the 90th percentile of the k-NN distance"))
    p.add_argument("--seed", type=int, help=dflt("seed for every random step", "seed"))
    p.add_argument("--holdout", type=float, metavar="FRACTION",
                   help=dflt("fit on the rest and score this fraction against it", "holdout"))
    p.add_argument("--silhouette-sample", type=int, help=dflt("rows the silhouette is computed on", "silhouette_sample"))
    p.add_argument("--fit-sample", type=int, metavar="N",
                   help=dflt("above N rows, fit every method on a seeded sample of N and place the rest by transform / "
                             "predict / approximate_predict in a streaming pass (0 = always fit every row)", "fit_sample"))
    p.add_argument("--reproducible-max", type=int, metavar="N",
                   help=dflt("up to N fitted rows the kNN graph and UMAP are seeded and single-threaded (the same "
                             "result every run); above N they use every core and a layout differs run to run",
                             "reproducible_max"))
    p.add_argument("--batch-size", type=int, metavar="N", help=dflt("rows per batch of that streaming pass", "batch_size"))
    p.add_argument("--backend", choices=list(BACKENDS),
                   help=dflt("UMAP/HDBSCAN/k-means on RAPIDS cuML (GPU) or the CPU; auto = cuML when it is installed "
                             "and a CUDA GPU is present", "backend"))
    p.add_argument("--knn-k", type=int, help=dflt("neighbours for the kNN novelty component", "knn_k", cls=NoveltyConfig))
    p.add_argument("--novelty-rule", choices=["zscore", "percentile"],
                   help=dflt("how is_novel is decided", "rule", cls=NoveltyConfig))
    p.add_argument("--novelty-z", type=float, help=dflt("zscore rule threshold", "z_threshold", cls=NoveltyConfig))
    p.add_argument("--novelty-percentile", type=float,
                   help=dflt("percentile rule threshold", "percentile", cls=NoveltyConfig))
    p.add_argument("--small-fraction", type=float,
                   help=dflt("contamination: a cluster this small or smaller", "small_fraction", cls=NoveltyConfig))
    p.add_argument("--dup-cosine", type=float,
                   help=dflt("near-duplicate cosine distance threshold", "cosine_threshold", cls=DuplicateConfig))
    p.add_argument("--dup-hamming", type=int,
                   help=dflt("perceptual-hash Hamming threshold", "hamming_threshold", cls=DuplicateConfig))
    p.add_argument("--novelty-only", action="store_true",
                   help="score new images against the latest analyze run without refitting")
    p.add_argument("--since", metavar="RUN|TIMESTAMP",
                   help="with --novelty-only: images embedded after this run or time (default: not yet scored)")
    p.add_argument("--config", metavar="FILE", help="TOML file with an [analyze] section")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary on stdout")
    p.add_argument("--zero-shot", metavar="TAGS",
                   help='instead of clustering: tag each image with the best of these comma-separated texts through '
                        'a CLIP table (--model; default the only one), e.g. "cat,dog,x-ray,document,screenshot"')
    p.add_argument("--prompt", default="a photo of a {}", help="with --zero-shot: the text per tag (default %(default)r)")
    p.add_argument("--weights", help="with --zero-shot: the text tower's weights (default: what the table records)")
