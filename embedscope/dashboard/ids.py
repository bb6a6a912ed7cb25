"""Component ids, in one place, so pages, callbacks and browser tests agree."""

# app shell
URL = "es-url"
BANNER = "es-random-weights-banner"
NAV = "es-nav"
SELECTION = "es-selection"  # session store: {"source": "map"|"sql"|"text", "sha256": [...]}
RUN_ERROR = "run-error"  # the one-line message of a page given an unknown ?run= id
CALLBACK_ERROR = "es-callback-error"  # the one-line message of a callback given malformed input


def nav_link(page_name: str) -> str:
    """The id of the nav-bar link to the page called ``page_name`` ("Within-image" → nav-within-image)."""
    return "nav-" + page_name.lower().replace(" ", "-")


# map page
MAP_RUN = "map-run"
MAP_PROJECTION = "map-projection"
MAP_COLOR = "map-color"
MAP_GRAPH = "map-graph"
MAP_NOTICE = "map-notice"
MAP_TOOLTIP = "map-tooltip"
MAP_POINT_PANEL = "map-point-panel"
MAP_GALLERY = "map-gallery"
MAP_GALLERY_TITLE = "map-gallery-title"
MAP_EXPORT = "map-export"
MAP_DOWNLOAD = "map-download"
MAP_CLEAR = "map-clear-selection"
MAP_GALLERY_CARDS = "map-gallery-cards"
MAP_TEXT = "map-text"  # the text query box (CLIP text search)
MAP_TEXT_GO = "map-text-go"
MAP_TEXT_STATUS = "map-text-status"
MAP_TOOLTIP_CONTENT = "map-tooltip-content"
MAP_POINT_NAME = "map-point-name"
MAP_OPEN_DETAIL = "map-open-detail"
MAP_NEIGHBOURS = "map-neighbours"

# image detail page
DETAIL_ROOT = "detail-root"
DETAIL_IMAGE = "detail-image"
DETAIL_OVERLAY = "detail-overlay-toggle"
DETAIL_NEIGHBOURS = "detail-neighbours"
DETAIL_SHA = "detail-sha"
DETAIL_SOURCES = "detail-sources"
DETAIL_SEARCH_UPLOAD = "detail-search-upload"
DETAIL_ERROR = "detail-error"

# SQL page
SQL_INPUT = "sql-input"
SQL_RUN = "sql-run"
SQL_STATUS = "sql-status"
SQL_TABLE = "sql-table"
SQL_SHOW_ON_MAP = "sql-show-on-map"
SQL_SHAS = "sql-shas"
SQL_ERROR = "sql-error"
SQL_ROWCOUNT = "sql-rowcount"

# flags page
FLAGS_KIND = "flags-kind"
FLAGS_GALLERY = "flags-gallery"
FLAGS_COUNT = "flags-count"
FLAGS_EXPORT = "flags-export"
FLAGS_DOWNLOAD = "flags-download"
FLAGS_RUN = "flags-run"
FLAGS_CARDS = "flags-cards"

# metrics page
METRICS_TABLE = "metrics-table"
METRICS_ELBOW = "metrics-elbow"
METRICS_SILHOUETTE = "metrics-silhouette-vs-k"

# clusters page
CLUSTERS_METHOD = "clusters-method"
CLUSTERS_SIZES = "clusters-sizes"
CLUSTERS_GALLERIES = "clusters-galleries"
CLUSTERS_RUN = "clusters-run"

# embeddings page
EMB_SHA = "emb-sha"
EMB_VECTOR = "emb-vector"
EMB_HIST = "emb-hist"
EMB_TOPDIMS = "emb-topdims"
EMB_PCA = "emb-pca"
EMB_HEATMAP = "emb-heatmap"
EMB_DOWNLOAD_NPY = "emb-download-npy"
EMB_DOWNLOAD_PARQUET = "emb-download-parquet"
EMB_DOWNLOAD = "emb-download"
EMB_MODEL = "emb-model"

# within-image page
PATCH_SHA = "patch-sha"
PATCH_K = "patch-k"
PATCH_RUN = "patch-run"
PATCH_STATUS = "patch-status"
PATCH_FIGURE = "patch-figure"
PATCH_EXAMPLES = "patch-examples"
PATCH_ERROR = "patch-error"
PATCH_DONE = "patch-done"

# search page (by an uploaded image)
SEARCH_UPLOAD = "search-upload"
SEARCH_K = "search-k"
SEARCH_STATUS = "search-status"
SEARCH_RESULTS = "search-results"
SEARCH_ERROR = "search-error"
SEARCH_QUERY_THUMB = "search-query-thumb"
SEARCH_DONE = "search-done"
SEARCH_CHECK_FAILED = "search-check-failed"
SEARCH_GALLERY = "search-gallery"
SEARCH_TEXT = "search-text"  # search by text through a CLIP table
SEARCH_TEXT_MODEL = "search-text-model"
SEARCH_TEXT_RESULTS = "search-text-results"
SEARCH_TEXT_GALLERY = "search-text-gallery"

# clusters page: dendrogram and the k-means / k-medoids animation
CLUSTERS_DENDROGRAM = "clusters-dendrogram"
CLUSTERS_DENDROGRAM_NOTE = "clusters-dendrogram-note"
CLUSTERS_DENDROGRAM_TEXT = "clusters-dendrogram-text"
ANIM_METHOD = "anim-method"
ANIM_INIT = "anim-init"
ANIM_K = "anim-k"
ANIM_PROJECTION = "anim-projection"
ANIM_SEED = "anim-seed"
ANIM_GRAPH = "anim-graph"
ANIM_NOTE = "anim-note"
ANIM_NOTE_TEXT = "anim-note-text"

# curation (map page's tag panel, image page's tags)
TAG_NAME = "tag-name"
TAG_NOTE = "tag-note"
TAG_ADD = "tag-add"
TAG_REMOVE = "tag-remove"
TAG_STATUS = "tag-status"
CURATED_EXPORT = "curated-export"
CURATED_DOWNLOAD = "curated-download"
DETAIL_TAG_NAME = "detail-tag-name"
DETAIL_TAG_ADD = "detail-tag-add"
DETAIL_TAG_REMOVE = "detail-tag-remove"
DETAIL_TAGS = "detail-tags"

# review page (near-duplicate pairs, exact duplicates, label conflicts, novel, contaminated)
REVIEW_TAB = "review-tab"
REVIEW_SORT = "review-sort"
REVIEW_SHOW_DECIDED = "review-show-decided"
REVIEW_PREV = "review-prev"
REVIEW_NEXT = "review-next"
REVIEW_PAGE = "review-page"  # store: the page's first row (offset)
REVIEW_PAGE_TEXT = "review-page-text"
REVIEW_TOTAL = "review-total"  # store: rows in the current queue view
REVIEW_REFRESH = "review-refresh"  # store: bumped after each decision
REVIEW_COUNTS = "review-counts"
REVIEW_STATUS = "review-status"
REVIEW_CONTENT = "review-content"
REVIEW_PAIR_ACTION = "review-pair-action"  # pattern id type: {type, action, left, right, cos, ham}
REVIEW_RELABEL = "review-relabel"  # pattern id type: {type, sha}
REVIEW_RELABEL_LABEL = "review-relabel-label"  # pattern id type: {type, sha}
REVIEW_PAGE_ROWS = "review-page-rows"  # store: the ids (pairs: left/right) on the current page
REVIEW_BULK_TAGGING = "review-bulk-tagging"  # the "tag every image on this page" controls
REVIEW_BULK_TAG = "review-bulk-tag"
REVIEW_BULK_NOTE = "review-bulk-note"
REVIEW_BULK_ADD = "review-bulk-add"
REVIEW_BULK_KEEP_LEFT = "review-bulk-keep-left"  # pairs: keep left on every pair of the page
SEARCH_MODEL = "search-model"  # which stored model an uploaded image is embedded with and searched in
# run picker (one dropdown per page: {"type": RUN_PICKER, "page": <path>})
RUN_PICKER = "es-run-picker"

# filter sidebar (dashboard/sidebar.py; one per page at a time)
SIDEBAR = "sidebar"
SIDEBAR_CONTEXT = "sidebar-context"
SIDEBAR_LABEL = "sidebar-label"
SIDEBAR_CLUSTER = "sidebar-cluster"
SIDEBAR_TAG = "sidebar-tag"
SIDEBAR_FLAG = "sidebar-flag"
SIDEBAR_SCORE = "sidebar-score"
SIDEBAR_ZERO_SHOT = "sidebar-zero-shot"
SIDEBAR_FOLDER = "sidebar-folder"
SIDEBAR_APPLY = "sidebar-apply"
SIDEBAR_STATUS = "sidebar-status"

# flags page: paging
FLAGS_PAGE = "flags-page"
FLAGS_PREV = "flags-prev"
FLAGS_NEXT = "flags-next"
FLAGS_PAGE_LABEL = "flags-page-label"

# clusters page: tabs, paging of the cluster galleries
CLUSTERS_TABS = "clusters-tabs"
CLUSTERS_PAGE = "clusters-page"
CLUSTERS_PREV = "clusters-prev"
CLUSTERS_NEXT = "clusters-next"
CLUSTERS_PAGE_LABEL = "clusters-page-label"

# metrics page: the runs compared
METRICS_RUNS = "metrics-runs"
METRICS_COMPARE = "metrics-compare"
# map page, level of detail (#18)
MAP_LOD = "map-lod"  # the view on screen: {"mode": "density"|"points"|"3d", "view", "loaded", "key", ...}
MAP_VIEWPORT = "map-viewport"  # the axes ranges on screen [x0, x1, y0, y1], written in the browser
MAP_GL_WARM = "map-gl-warm"  # written once the browser prepared WebGL for the points view
MAP_REPS = "map-representatives"  # the "cluster representatives" layer toggle
MAP_GALLERY_PREV = "map-gallery-prev"
MAP_GALLERY_NEXT = "map-gallery-next"
MAP_GALLERY_PAGE = "map-gallery-page"
MAP_LOADING = "map-loading"
PAGE_LOADING = "es-page-loading"
