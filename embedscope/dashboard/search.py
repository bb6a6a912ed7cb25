"""Search by an uploaded image: the upload's bytes (in memory only, never written, never a
path) are decoded by the safe decoder and embedded exactly as ingest embedded the stored table
(:class:`embedscope.ingest.embed_file.QueryEmbedder`: same model, weights, preprocessing),
then searched with :func:`embedscope.store.search.similar`.

The embedder is built lazily, once per (model, variant, weights) in the server process
(:class:`QueryEmbedderCache`): loading the network costs seconds. When it is built, one
stored image is re-embedded and compared with its stored vector, so a dashboard started with
other ``--image-size`` / ``--preprocess`` than the ingest says so on screen instead of
returning meaningless neighbours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from embedscope.errors import DecodeError, EmbedscopeError

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
CHECK_MIN_SIMILARITY = 0.999  # re-embedding a stored image must give (almost) its stored vector


def upload_bytes(contents: str | None, *, max_bytes: int = MAX_UPLOAD_BYTES) -> bytes:
    """The bytes of a ``dcc.Upload`` value (``data:<mime>;base64,<data>``). Raises
    :class:`DecodeError` when it is missing, not base64, empty or too large."""
    if not contents:
        raise DecodeError("nothing was uploaded", "drop an image file on the upload box")
    head, sep, b64 = contents.partition(",")
    if not sep or ";base64" not in head:
        raise DecodeError("the upload is not base64 data", "upload the image file itself")
    if len(b64) * 3 // 4 > max_bytes:
        raise DecodeError(f"the upload is larger than {max_bytes // (1024 * 1024)} MiB", "upload a smaller image")
    try:
        data = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError):
        raise DecodeError("the upload is not valid base64 data", "upload the image file itself") from None
    if not data:
        raise DecodeError("empty file (0 bytes)", "upload an image file")
    return data


@dataclass
class Embedder:
    """A loaded query embedder plus the result of its self-check on one stored image."""

    embedder: Any
    settings: Any
    check_sha: str | None = None
    check_similarity: float | None = None


class QueryEmbedderCache:
    """Query embedders built on first use and kept per (model, variant, weights label)."""

    def __init__(self, flags: Mapping[str, Any] | None = None, config_file: str | None = None) -> None:
        self.flags = dict(flags or {})
        self.config_file = config_file
        self._items: dict[tuple[str, str, str], Embedder] = {}
        self._lock = threading.Lock()

    def get(self, db: Any, model: str, variant: str, weights_label: str) -> Embedder:
        from embedscope.ingest.embed_file import QueryEmbedder, query_settings

        key = (model, variant, weights_label)
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                settings = query_settings(model, weights_label, self.flags, config_file=self.config_file)
                hit = Embedder(QueryEmbedder(settings, variant=variant, expect_weights=weights_label), settings)
                _self_check(db, hit, model, variant)
                self._items[key] = hit
            return hit


def _self_check(db: Any, item: Embedder, model: str, variant: str, tries: int = 3) -> None:
    """Re-embed a stored image whose file is still there; record the cosine to its stored vector."""
    import numpy as np

    from embedscope.store import schema as S
    from embedscope.store import views

    t = db.dataset(S.embeddings_table_name(model)).to_table(columns=["sha256", "vector"], filter=f"variant = '{variant}'",
                                                            limit=tries)
    for sha, vec in zip(t.column("sha256").to_pylist()[:tries], t.column("vector").to_pylist()[:tries]):
        for path in views.stored_paths(db, sha):  # paths from the database, never from a request
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if hashlib.sha256(data).hexdigest() != sha:
                continue
            try:
                new = item.embedder.embed_bytes([data])[0]
            except EmbedscopeError:
                continue
            a, b = np.asarray(vec, np.float64), np.asarray(new, np.float64)
            item.check_sha = sha
            item.check_similarity = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
            return


@dataclass
class UploadResult:
    """What the page shows: neighbours, or ``error`` (one line) and nothing else."""

    error: str | None = None
    neighbours: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None
    variant: str | None = None
    weights: str | None = None
    image_size: int | None = None
    preprocess: str | None = None
    stored_sha: str | None = None  # the upload's own sha256 when that content is in the database
    query_thumb: str | None = None  # a small JPEG of the upload as a data: URI, to show what was searched
    check_sha: str | None = None
    check_similarity: float | None = None

    @property
    def check_failed(self) -> bool:
        return self.check_similarity is not None and self.check_similarity < CHECK_MIN_SIMILARITY


def search_upload(db: Any, cache: QueryEmbedderCache, contents: str | None, filename: str | None = None, *,
                  k: int = 12, run: Any = None) -> UploadResult:
    """Embed an uploaded image (``dcc.Upload`` contents) and find its ``k`` nearest stored images
    in the embeddings ``run`` was computed on (the only / ``full`` ones without a run).

    Every failure (not an image, truncated, too large, weights that cannot be reproduced) comes
    back as ``UploadResult.error``; nothing raises into the callback.
    """
    from embedscope.ingest.embed_file import table_weights_label
    from embedscope.store import schema as S
    from embedscope.store import views
    from embedscope.store.search import _pick_model, similar

    try:
        data = upload_bytes(contents)
        model = _pick_model(db, run.model if run is not None else None)
        variant = (run.variant if run is not None else None) or S.VARIANT_FULL
        label = table_weights_label(db, model, variant)
        item = cache.get(db, model, variant, label)
        vec = item.embedder.embed_bytes([data], names=[filename or "upload"])[0]
        table = similar(db, vec, k=k, model=model, variant=variant)
    except EmbedscopeError as exc:
        return UploadResult(error=f"{filename or 'upload'}: {exc.one_line()}")
    rows = table.to_pylist()
    thumb = _thumb_uri(data, item.settings)
    labels = {r["sha256"]: r.get("label") for r in views.image_rows(db, [r["sha256"] for r in rows])}
    sha = hashlib.sha256(data).hexdigest()
    return UploadResult(
        neighbours=[{"sha256": r["sha256"], "path": r["path"], "label": labels.get(r["sha256"]),
                     "similarity": 1.0 - float(r["distance"])} for r in rows],
        model=model, variant=variant, weights=label, image_size=item.settings.image_size,
        preprocess=item.settings.preprocess, stored_sha=sha if db.count(S.IMAGES, where=f"sha256 = '{sha}'") else None,
        check_sha=item.check_sha, check_similarity=item.check_similarity, query_thumb=thumb)


def _thumb_uri(data: bytes, settings: Any, side: int = 160) -> str | None:
    """The upload as a small JPEG ``data:`` URI (decoded again by the safe decoder)."""
    from embedscope.ingest.decode import decode_bytes, thumbnail_jpeg

    try:
        img = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=side).image
    except DecodeError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail_jpeg(img, side)).decode()
