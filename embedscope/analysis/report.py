"""``embedscope report``: one self-contained HTML file for an analyze run.

It holds the comparison tables the seed notebooks made by hand (clustering method × metric on
the embedding space; projection × clustering silhouettes; full vs sam2_masked from the latest
run of each variant of the same model), the k sweep (elbow and silhouette-vs-k), the
agglomerative dendrogram, static PNG scatter plots of each projection coloured by the primary
clustering with novel images marked, the contaminated clusters with their reasons, the
contaminated and most novel images (thumbnail, path, label, why), the latest zero-shot run
(:mod:`embedscope.analysis.report_zero_shot`) and the parameters as tables. A red banner on
top says so when any embeddings were made with random weights. Plots and thumbnails are
inline (base64), so the file can be mailed around.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from embedscope.analysis.report_html import STYLE, image_cards, params_tables, png, table, weights_warning
from embedscope.analysis.report_zero_shot import zero_shot_section
from embedscope.errors import NotFoundError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import both, eq
from embedscope.store.runs import KIND_ANALYZE, latest_run, run_or_latest

IMAGES_SHOWN = 24  # image cards per list (novel, contaminated)
METRIC_COLUMNS = ("silhouette", "davies_bouldin", "calinski_harabasz", "ari", "nmi", "n_clusters", "noise_fraction")


def _metrics(db: Database, run_id: str) -> list[dict[str, Any]]:
    return db.read(S.METRICS, where=eq("run_id", run_id)).to_pylist()


def _methodtable(metrics: list[dict[str, Any]], space: str = "embedding") -> tuple[list[str], list[list[Any]]]:
    methods = sorted({m["method"] for m in metrics if m["method"] and m["k"] is None})
    names = [n for n in METRIC_COLUMNS if any(m["name"] == n for m in metrics)]
    val = {(m["method"], m["name"]): m["value"] for m in metrics if m["space"] == space and m["k"] is None}
    return ["method", *names], [[meth, *[val.get((meth, n)) for n in names]] for meth in methods]


def write_report(db: Database, *, run_id: str | None = None, out: str | Path = "report.html") -> Path:
    """Write the report of ``run_id`` (default: the latest analyze run) to ``out``; returns its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = run_or_latest(db, run_id, kind=KIND_ANALYZE)
    if run is None:
        raise NotFoundError(f"no analyze run in {db.uri}", "run `embedscope analyze --db DIR` first")
    p = run.params
    rid = run.run_id
    metrics = _metrics(db, rid)
    parts = [f"<h1>embedscope report — run {html.escape(rid)}</h1>", weights_warning(db),
             f"<p>{run.kind} run of <b>{html.escape(str(run.model))}/{html.escape(str(run.variant))}</b>, "
             f"{run.n_images} images, created {run.created_at}, embeddings table version {run.table_version}. "
             f"Primary clustering <b>{html.escape(str(p.get('primary_cluster')))}</b>, primary projection "
             f"<b>{html.escape(str(p.get('primary_projection')))} {p.get('primary_dims')}-D</b>.</p>"]
    sampling = p.get("sampling") or {}
    if sampling.get("statement"):
        backend = (p.get("backend_resolved") or {}).get("name", "cpu")
        parts.append(f"<p>Sampling: {html.escape(sampling['statement'])} (backend {html.escape(str(backend))}).</p>")

    header, rows = _methodtable(metrics)
    parts += ["<h2>Clustering × metric (embedding space)</h2>", table(header, rows)]
    extra = [[m["name"], m["value"]] for m in metrics if not m["method"] and m["k"] is None]
    if extra:
        parts += ["<h2>Run-level metrics</h2>", table(["metric", "value"], extra)]

    spaces = sorted({m["space"] for m in metrics if m["space"] != "embedding" and m["k"] is None})
    if spaces:
        methods = sorted({m["method"] for m in metrics if m["method"] and m["k"] is None})
        val = {(m["space"], m["method"]): m["value"] for m in metrics if m["name"] == "silhouette"}
        parts += ["<h2>Projection × clustering (silhouette in the projection)</h2>",
                  table(["projection", *methods], [[s, *[val.get((s, meth)) for meth in methods]] for s in spaces])]

    # full vs sam2_masked: the latest analyze run of each variant of this model
    variants = []
    for v in S.VARIANTS:
        latest = run if v == run.variant else latest_run(db, kind=KIND_ANALYZE, model=run.model, variant=v)
        if latest is not None:
            variants.append((v, latest.run_id))
    if len(variants) > 1:
        rows = []
        for v, r in variants:
            _, vrows = _methodtable(_metrics(db, r))
            rows += [[v, r, *row] for row in vrows]
        parts += ["<h2>Variants compared (latest analyze run of each)</h2>", table(["variant", "run", *header], rows)]

    sweep = sorted((m for m in metrics if m["k"] is not None), key=lambda m: m["k"])
    if sweep:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for ax, name, title in ((axes[0], "inertia", "elbow (k-means inertia)"), (axes[1], "silhouette_vs_k", "silhouette vs k")):
            pts = [(m["k"], m["value"]) for m in sweep if m["name"] == name]
            if pts:
                ax.plot(*zip(*pts), marker="o")
            ax.set_title(title)
            ax.set_xlabel("k")
        if p.get("k_resolved"):
            for ax in axes:
                ax.axvline(p["k_resolved"], color="red", ls="--", lw=1)
        parts += ["<h2>Choosing k</h2>", f"<p>chosen k = {p.get('k_resolved')}</p>", png(fig)]

    dendro = p.get("dendrogram")
    if dendro:
        from scipy.cluster.hierarchy import dendrogram

        fig, ax = plt.subplots(figsize=(9, 3.5))
        dendrogram(np.asarray(dendro["linkage"]), ax=ax, no_labels=True, color_threshold=None)
        ax.set_title(f"agglomerative ({dendro['method']}) dendrogram of a sample of {len(dendro['sha256'])} images")
        parts += ["<h2>Dendrogram</h2>", png(fig)]

    parts += _projection_plots(db, rid, p)
    parts += _flags_section(db, rid, p)
    parts += zero_shot_section(db)
    parts += ["<h2 id=parameters>Parameters</h2>", params_tables(p),
              f"<p>All of them as JSON: <code>SELECT params FROM runs WHERE run_id = '{html.escape(rid)}'</code></p>"]

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>embedscope report {html.escape(rid)}</title>"
                   f"<style>{STYLE}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return out


def _projection_plots(db: Database, rid: str, p: dict[str, Any]) -> list[str]:
    import matplotlib.pyplot as plt

    proj = db.read(S.PROJECTIONS, where=eq("run_id", rid)).to_pandas()
    if proj.empty:
        return []
    clusters = db.read(S.CLUSTERS, ["sha256", "cluster"], where=both(eq("run_id", rid), eq("method", p.get("primary_cluster"))))
    cl = dict(zip(clusters.column("sha256").to_pylist(), clusters.column("cluster").to_pylist()))
    flags = db.read(S.FLAGS, ["sha256", "is_novel"], where=eq("run_id", rid))
    novel = {s for s, v in zip(flags.column("sha256").to_pylist(), flags.column("is_novel").to_pylist()) if v}
    parts = ["<h2>Projections</h2>"]
    for (method, dims), grp in proj.groupby(["method", "dims"]):
        c = np.array([cl.get(s, -1) if cl.get(s) is not None else -1 for s in grp["sha256"]])
        nov = np.array([s in novel for s in grp["sha256"]])
        fig = plt.figure(figsize=(6, 5))
        ax = fig.add_subplot(projection="3d") if dims == 3 else fig.add_subplot()
        coords = [grp["x"].to_numpy(), grp["y"].to_numpy()] + ([grp["z"].to_numpy()] if dims == 3 else [])
        noise = c < 0
        ax.scatter(*[v[~noise] for v in coords], c=c[~noise], cmap="tab20", s=6)
        if noise.any():
            ax.scatter(*[v[noise] for v in coords], c="lightgrey", s=6, label="noise")
        if nov.any():
            ax.scatter(*[v[nov] for v in coords], facecolors="none", edgecolors="red", s=30, label="novel")
        if noise.any() or nov.any():
            ax.legend(loc="best", fontsize=7)
        ax.set_title(f"{method} {dims}-D, coloured by {p.get('primary_cluster')}")
        parts.append(png(fig))
    return parts


def _flags_section(db: Database, rid: str, p: dict[str, Any]) -> list[str]:
    flags = db.read(S.FLAGS, ["sha256", "novelty_score", "is_novel", "surprise", "novelty_reason", "is_contaminated",
                              "contamination_reason", "cluster", "dup_group", "phash_group"],
                    where=eq("run_id", rid)).to_pandas()
    parts = ["<h2 id=contamination>Contamination</h2>"]
    cont = p.get("contaminated_clusters") or {}
    parts.append(table(["cluster", "reason"], [[c, r] for c, r in cont.items()]) if cont else "<p>no contaminated clusters</p>")
    contaminated = flags[flags["is_contaminated"].fillna(False).astype(bool)]
    if len(contaminated):
        shown = contaminated.sort_values(["cluster", "novelty_score", "sha256"], ascending=[True, False, True])
        shown = shown.head(IMAGES_SHOWN)
        parts.append(f"<h3>Contaminated images ({len(contaminated)}"
                     + (f", the first {len(shown)} by cluster and score" if len(shown) < len(contaminated) else "") + ")</h3>")
        why = [(r.sha256, f"cluster {r.cluster:.0f}: {r.contamination_reason}") for r in shown.itertuples()]
        parts.append(image_cards(db, why, grid_id="contaminated-images"))
    n_novel = int(flags["is_novel"].fillna(False).sum())
    top = flags.sort_values(["novelty_score", "sha256"], ascending=[False, True]).head(
        min(max(n_novel, IMAGES_SHOWN // 2), IMAGES_SHOWN))
    parts.append(f"<h2 id=novelty>Novelty</h2><p>rule {html.escape(str((p.get('novelty') or {}).get('rule')))}, threshold "
                 f"{p.get('novelty_threshold')}; {n_novel} of {len(flags)} images novel. The {len(top)} highest "
                 "scores, novel or not:</p>")
    parts.append(image_cards(db, [(r.sha256, _novelty_why(r)) for r in top.itertuples()], grid_id="novel-images"))
    parts.append(f"<h2>Near-duplicates</h2><p>{flags['dup_group'].nunique()} embedding groups (cosine distance ≤ "
                 f"{(p.get('duplicates') or {}).get('cosine_threshold')}), {flags['phash_group'].nunique()} perceptual-hash "
                 f"groups (Hamming ≤ {(p.get('duplicates') or {}).get('hamming_threshold')}).</p>")
    return parts


def _novelty_why(r: Any) -> str:
    """"NOVEL · score 4.2, surprise 0.9: far from every cluster" (the parts that exist)."""
    text = ("NOVEL · " if r.is_novel else "") + f"score {r.novelty_score:.3g}"
    if r.surprise == r.surprise and r.surprise is not None:
        text += f", surprise {r.surprise:.3g}"
    return text + (f": {r.novelty_reason}" if r.novelty_reason else "")
