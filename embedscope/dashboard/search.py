"""Search by an uploaded image: the upload's bytes (in memory only, never written, never a
path) are decoded by the safe decoder and embedded exactly as ingest embedded the stored table
(:class:`embedscope.ingest.embed_file.QueryEmbedder`: same model, weights, preprocessing),
then searched with :func:`embedscope.store.search.similar`.

The embedder comes from the app's one :class:`embedscope.dashboard.encoders.EncoderCache`
(loaded once per model, variant and weights, and self-checked against a stored vector).

Bounded: at most :data:`MAX_UPLOAD_BYTES` of file, at most ``max_pixels`` (read from the image
header before anything is decoded), and at most :data:`~embedscope.dashboard.originals.DECODE_SLOTS`
decodes at once app-wide — an upload that finds no free slot is told "busy, retry".
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from typing import Any

from embedscope.dashboard.context import DEFAULT_MAX_UPLOAD_PIXELS
from embedscope.dashboard.encoders import CHECK_MIN_SIMILARITY, EncoderCache
from embedscope.dashboard.originals import Refused, decode_slot
from embedscope.errors import DecodeError, EmbedscopeError
from embedscope.hashing import sha256_bytes

MAX_UPLOAD_BYTES = 25 * 1024 * 1024


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


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Raise :class:`DecodeError` when the image header says more than ``max_pixels`` (nothing
    is decoded; a header Pillow cannot read is left to the safe decoder's own error)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError:
        w, h = max_pixels + 1, 1
    except Exception:  # not an image Pillow knows: the decoder says why, in one line
        return
    if w * h > max_pixels:
        size = f"{w}×{h} = {w * h / 1e6:.1f} Mpx" if h > 1 else "too many pixels"
        raise DecodeError(f"the image is {size}, more than the {max_pixels / 1e6:g} Mpx the dashboard decodes",
                          "upload a smaller image, or use `embedscope similar FILE`")


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


def search_upload(db: Any, cache: EncoderCache, contents: str | None, filename: str | None = None, *,
                  k: int = 12, run: Any = None, model: str | None = None,
                  max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS, search_cache: Any = None) -> UploadResult:
    """Embed an uploaded image (``dcc.Upload`` contents) and find its ``k`` nearest stored images
    in ``model``'s table (default: the one ``run`` was computed on, else the only one); the
    variant is ``run``'s when it is that model's run, else ``full``.

    Every failure (not an image, truncated, too large, weights that cannot be reproduced) comes
    back as ``UploadResult.error``; nothing raises into the callback.
    """
    from embedscope.ingest.embed_file import table_weights_label
    from embedscope.store import schema as S
    from embedscope.store import views
    from embedscope.store.filters import eq
    from embedscope.store.search import pick_model, similar

    try:
        data = upload_bytes(contents)
        check_pixels(data, max_pixels)
        with decode_slot(wait=0):  # the decodes, and loading the encoder the first time
            model = pick_model(db, model or (run.model if run is not None else None))
            variant = (run.variant if run is not None and run.model == model else None) or S.VARIANT_FULL
            label = table_weights_label(db, model, variant)
            item = cache.get(db, model, variant, label)
            vec = item.embedder.embed_bytes([data], names=[filename or "upload"])[0]
            thumb = _thumb_uri(data, item.settings)
        table = similar(db, vec, k=k, model=model, variant=variant, cache=search_cache)
    except (EmbedscopeError, Refused) as exc:
        text = exc.one_line() if isinstance(exc, EmbedscopeError) else str(exc)
        return UploadResult(error=f"{filename or 'upload'}: {text}")
    rows = table.to_pylist()
    labels = {r["sha256"]: r.get("label") for r in views.image_rows(db, [r["sha256"] for r in rows])}
    sha = sha256_bytes(data)
    return UploadResult(
        neighbours=[{"sha256": r["sha256"], "path": r["path"], "label": labels.get(r["sha256"]),
                     "similarity": 1.0 - float(r["distance"])} for r in rows],
        model=model, variant=variant, weights=label, image_size=item.settings.image_size,
        preprocess=item.settings.preprocess, stored_sha=sha if db.count(S.IMAGES, where=eq("sha256", sha)) else None,
        check_sha=item.check_sha, check_similarity=item.check_similarity, query_thumb=thumb)


def _thumb_uri(data: bytes, settings: Any, side: int = 160) -> str | None:
    """The upload as a small JPEG ``data:`` URI (decoded again by the safe decoder)."""
    from embedscope.ingest.decode import decode_bytes, thumbnail_jpeg

    try:
        img = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=side).image
    except DecodeError:
        return None
    return "data:image/jpeg;base64," + base64.b64encode(thumbnail_jpeg(img, side)).decode()
