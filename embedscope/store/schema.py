"""Every table's Arrow schema, in one place.

Tables (LanceDB, one directory each under the database folder):

- ``images``       one row per distinct file content (sha256), first path seen, metadata, thumbnail
- ``sources``      every (sha256, path) ever seen, duplicates and quarantined files included
- ``quarantine``   files that could not be decoded, with the reason
- ``embeddings_<model>``  one table per encoder (vectors are fixed-size, and dims differ
                   between models); SQL sees their union as ``embeddings``
- ``masks``        the SAM2 mask chosen per image
- ``runs``, ``clusters``, ``projections``, ``flags``, ``metrics``  analysis results by run_id
- ``run_models``   per analyze run, the fitted model of the data that novelty-only runs score against
- ``quality``      per image, raw quality numbers measured at decode (blur, brightness, entropy, colour)
- ``drops``, ``arrivals``, ``pairs``, ``labels``  arrival checks: one row per checked drop, one per
                   (drop, path, verdict), the duplicate pairs found, every label seen per sha256
                   (see docs/verdicts.md)
- ``tags``         the curator's tag log (append-only; SQL's ``image_tags`` view is the current state)
"""

from __future__ import annotations

import re

import pyarrow as pa

IMAGES = "images"
SOURCES = "sources"
QUARANTINE = "quarantine"
EMBEDDINGS_PREFIX = "embeddings_"
MASKS = "masks"
RUNS = "runs"
CLUSTERS = "clusters"
PROJECTIONS = "projections"
FLAGS = "flags"
ZERO_SHOT = "zero_shot"
METRICS = "metrics"
RUN_MODELS = "run_models"  # per analyze run: the fitted model of the data (for novelty-only scoring)
QUALITY = "quality"
DROPS = "drops"
ARRIVALS = "arrivals"
PAIRS = "pairs"
LABELS = "labels"

VARIANT_FULL = "full"
VARIANT_SAM2 = "sam2_masked"
VARIANT_PATCH_MEAN = "patch_mean"  # mean of the patch tokens of the full image (--store-patch-mean)
VARIANTS = (VARIANT_FULL, VARIANT_SAM2, VARIANT_PATCH_MEAN)

_TS = pa.timestamp("us", tz="UTC")

IMAGES_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string()),  # first path this content was seen at
        pa.field("size_bytes", pa.int64()),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("format", pa.string()),
        pa.field("label", pa.string()),
        # 64-bit DCT perceptual hash, bit pattern stored in a signed int64 (SQL: bit_count(a # b))
        pa.field("phash", pa.int64()),
        pa.field("ingested_at", _TS),
        pa.field("thumbnail", pa.binary()),  # JPEG bytes, longest side <= thumbnail_size
    ]
)

SOURCES_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("drop", pa.string()),  # the drop root the path was found under
        pa.field("size_bytes", pa.int64()),
        pa.field("mtime", _TS),
        pa.field("seen_at", _TS),  # last time an ingest saw this path with this content
    ]
)

QUARANTINE_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("size_bytes", pa.int64()),
        pa.field("reason", pa.string()),
        pa.field("seen_at", _TS),
    ]
)


def embeddings_schema(dim: int) -> pa.Schema:
    return pa.schema(
        [
            pa.field("sha256", pa.string(), nullable=False),
            pa.field("model", pa.string(), nullable=False),
            pa.field("variant", pa.string(), nullable=False),
            pa.field("dim", pa.int32()),
            # L2-normalised: the CLS token, or for variant 'patch_mean' the patch tokens' mean
            pa.field("vector", pa.list_(pa.float32(), dim)),
            pa.field("weights", pa.string()),  # 'hub:<id>', 'file:<sha256>', 'random' or 'import:<file>'
            pa.field("created_at", _TS),
        ]
    )


MASKS_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("model", pa.string(), nullable=False),  # e.g. sam2.1_hiera_tiny
        pa.field("weights", pa.string()),
        pa.field("area_fraction", pa.float32()),
        pa.field("bbox", pa.list_(pa.int32(), 4)),  # x0, y0, x1, y1 in original pixels
        pa.field("score", pa.float32()),
        pa.field("mask_png", pa.binary()),  # 1-bit PNG at the original image size
        pa.field("fallback", pa.bool_()),  # no usable mask: masked variant == full image
        pa.field("reason", pa.string()),
        pa.field("created_at", _TS),
        pa.field("mask_mode", pa.string()),  # how the masked image was made: mean_fill | crop
    ]
)

RUNS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("kind", pa.string()),  # 'analyze' | 'novelty'
        pa.field("model", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("params", pa.string()),  # JSON
        pa.field("created_at", _TS),
        pa.field("table_version", pa.int64()),  # Lance version of the embeddings table read
        pa.field("n_images", pa.int64()),
    ]
)

CLUSTERS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # hdbscan, kmeans, kmedoids, agglomerative, dbscan
        pa.field("cluster", pa.int32()),  # -1 = noise
        pa.field("probability", pa.float32()),
    ]
)

PROJECTIONS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),  # umap, tsne, pca
        pa.field("dims", pa.int32(), nullable=False),
        pa.field("x", pa.float32()),
        pa.field("y", pa.float32()),
        pa.field("z", pa.float32()),
    ]
)

FLAGS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("novelty_score", pa.float32()),
        pa.field("is_novel", pa.bool_()),
        pa.field("surprise", pa.float32()),
        pa.field("centroid_score", pa.float32()),
        pa.field("knn_score", pa.float32()),
        pa.field("glosh_score", pa.float32()),
        pa.field("novelty_reason", pa.string()),
        pa.field("is_contaminated", pa.bool_()),
        pa.field("contamination_reason", pa.string()),
        pa.field("dup_group", pa.int64()),  # embedding near-duplicate group, null = none
        pa.field("phash_group", pa.int64()),  # perceptual-hash near-duplicate group
        pa.field("in_fit", pa.bool_()),  # True: the model of the data was fitted on it; False: scored against it
        pa.field("cluster", pa.int32()),  # the primary clustering's cluster (nearest centroid when scored)
    ]
)

# one row per image and zero-shot run (``analyze --zero-shot``; see embedscope.analysis.zero_shot)
ZERO_SHOT_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("tag", pa.string()),  # the most probable of the run's tags
        pa.field("probability", pa.float32()),  # softmax over the tags of cosine × 100 (CLIP's logit scale)
        pa.field("margin", pa.float32()),  # probability of the best tag minus that of the runner-up
        pa.field("label_disagreement", pa.bool_()),  # the label names another tag and the best is confident
    ]
)

METRICS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),  # silhouette, davies_bouldin, ari, ...
        pa.field("method", pa.string()),  # the clustering it scores, or '' for the embedding
        pa.field("space", pa.string()),  # 'embedding' or the projection, e.g. 'umap2d'
        pa.field("k", pa.int32()),  # for sweeps (elbow / silhouette-vs-k), else null
        pa.field("value", pa.float64()),
    ]
)

RUN_MODELS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("format", pa.string()),  # 'npz-v1': see embedscope.analysis.novelty.DataModel
        pa.field("blob", pa.binary()),
        pa.field("created_at", _TS),
    ]
)

QUALITY_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("blur", pa.float32()),  # variance of the Laplacian of the grey image (low = blurry)
        pa.field("brightness", pa.float32()),  # mean luminance, 0..255
        pa.field("entropy", pa.float32()),  # of the grey-level histogram, bits (0 = one flat colour)
        pa.field("colorfulness", pa.float32()),  # mean |R-G|+|G-B| per pixel (0 = grey image)
    ]
)

DROPS_SCHEMA = pa.schema(
    [
        pa.field("drop_id", pa.string(), nullable=False),
        pa.field("kind", pa.string()),  # 'ingest' | 'watch' | 'table' (whole-table check)
        pa.field("model", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("sources", pa.string()),  # the drop folders, JSON list
        pa.field("started_at", _TS),
        pa.field("finished_at", _TS),
        pa.field("n_images", pa.int64()),  # arrivals checked (paths)
        pa.field("counts", pa.string()),  # JSON {verdict: paths}
        pa.field("params", pa.string()),  # JSON: rules, thresholds and the calibration used
    ]
)

# One row per (drop, path, verdict): an arrival can hold several verdicts (near_dup + leak).
ARRIVALS_SCHEMA = pa.schema(
    [
        pa.field("drop_id", pa.string(), nullable=False),
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("path", pa.string(), nullable=False),
        pa.field("verdict", pa.string(), nullable=False),  # new|exact_dup|near_dup|label_conflict|leak|low_quality|novel|quarantined
        pa.field("reason", pa.string()),
        pa.field("partner_sha256", pa.string()),
        pa.field("partner_path", pa.string()),
        pa.field("cosine", pa.float32()),  # cosine distance to the partner
        pa.field("hamming", pa.int32()),  # phash Hamming distance to the partner
        pa.field("label", pa.string()),
        pa.field("split", pa.string()),
        pa.field("created_at", _TS),
    ]
)

PAIRS_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),  # the drop (or whole-table check) that found it
        pa.field("sha_a", pa.string(), nullable=False),  # the later image
        pa.field("path_a", pa.string(), nullable=False),
        pa.field("sha_b", pa.string(), nullable=False),  # the earlier image it duplicates (exact: the same sha)
        pa.field("path_b", pa.string()),
        pa.field("kind", pa.string()),  # exact | near
        pa.field("cosine", pa.float32()),
        pa.field("hamming", pa.int32()),
        pa.field("rule", pa.string()),  # which rule matched: sha256 | cosine | phash+cosine
    ]
)

LABELS_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
        pa.field("path", pa.string()),  # the first path seen with this label
        pa.field("first_seen", _TS),
    ]
)

# -- curation (issue 15): the tag log ----------------------------------------------------------
TAGS = "tags"
TAGS_SCHEMA = pa.schema(
    [
        pa.field("sha256", pa.string(), nullable=False),
        pa.field("tag", pa.string(), nullable=False),  # exclude | keep | reviewed | relabel:<label> | any name
        pa.field("action", pa.string(), nullable=False),  # 'add' | 'remove'; the latest per (sha256, tag) wins
        pa.field("note", pa.string()),
        pa.field("source", pa.string()),  # 'dashboard' | 'cli' | 'api' | 'sql-result'
        pa.field("tagged_at", _TS),
    ]
)

FIXED_SCHEMAS: dict[str, pa.Schema] = {
    IMAGES: IMAGES_SCHEMA,
    SOURCES: SOURCES_SCHEMA,
    QUARANTINE: QUARANTINE_SCHEMA,
    MASKS: MASKS_SCHEMA,
    RUNS: RUNS_SCHEMA,
    CLUSTERS: CLUSTERS_SCHEMA,
    PROJECTIONS: PROJECTIONS_SCHEMA,
    FLAGS: FLAGS_SCHEMA,
    ZERO_SHOT: ZERO_SHOT_SCHEMA,
    METRICS: METRICS_SCHEMA,
    RUN_MODELS: RUN_MODELS_SCHEMA,
    QUALITY: QUALITY_SCHEMA,
    DROPS: DROPS_SCHEMA,
    ARRIVALS: ARRIVALS_SCHEMA,
    PAIRS: PAIRS_SCHEMA,
    LABELS: LABELS_SCHEMA,
    # curation
    TAGS: TAGS_SCHEMA,
}

# Upsert keys: what makes a row unique in each table.
KEYS: dict[str, list[str]] = {
    IMAGES: ["sha256"],
    SOURCES: ["sha256", "path"],
    QUARANTINE: ["sha256", "path"],
    MASKS: ["sha256", "model"],
    RUNS: ["run_id"],
    CLUSTERS: ["run_id", "method", "sha256"],
    PROJECTIONS: ["run_id", "method", "dims", "sha256"],
    FLAGS: ["run_id", "sha256"],
    ZERO_SHOT: ["run_id", "sha256"],
    METRICS: ["run_id", "name", "method", "space", "k"],
    RUN_MODELS: ["run_id"],
    QUALITY: ["sha256"],
    DROPS: ["drop_id"],
    ARRIVALS: ["drop_id", "path", "verdict"],
    PAIRS: ["run_id", "path_a", "sha_b"],
    LABELS: ["sha256", "label"],
    # curation: an append-only log (Database.append), keyed by when
    TAGS: ["sha256", "tag", "tagged_at"],
}
EMBEDDING_KEYS = ["sha256", "model", "variant"]

_SAFE = re.compile(r"[^A-Za-z0-9_]+")


def embeddings_table_name(model: str) -> str:
    """``embeddings_<model>`` with anything but letters, digits and ``_`` turned into ``_``."""
    return EMBEDDINGS_PREFIX + _SAFE.sub("_", model).strip("_").lower()
