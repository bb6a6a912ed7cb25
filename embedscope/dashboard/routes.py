"""Server-side routes for image bytes.

Images are served ONLY by their stored key (a sha256, or an id imported by ``ingest-vectors``):
the route looks the key up in the database and reads the path stored there (or the stored
thumbnail). No request parameter is ever used as a path. A stored image without a thumbnail
(an imported vector) gets a placeholder, not a broken image. Originals are read by :mod:`embedscope.dashboard.originals` (regular files only, size
cap, never blocking, sha256 re-checked); every response is re-encoded by Pillow after the safe
decoder, never the raw file. When the original is not served, the thumbnail is, and the
``X-Embedscope-Note`` header says why.
"""

from __future__ import annotations

import functools
import io
from typing import Any

from embedscope.dashboard.context import DashboardContext
from embedscope.dashboard.originals import load_original

MAX_SIDE = 2048  # full images are downscaled to this longest side for the browser


def register_routes(server: Any, ctx: DashboardContext) -> None:
    """Add /thumb/<sha256>, /image/<sha256> and /overlay/<sha256> to the Flask ``server``."""
    from flask import Response, abort

    from embedscope.store import views

    def _jpeg(data: bytes, source: str, note: str | None = None) -> Response:
        resp = Response(data, mimetype="image/jpeg")
        if note is None:  # content-addressed: a served original never changes
            resp.headers["Cache-Control"] = "private, max-age=3600"
        else:  # the original may come back (or free a decode slot): do not cache the stand-in
            resp.headers["Cache-Control"] = "no-store"
            resp.headers["X-Embedscope-Note"] = note
        resp.headers["X-Embedscope-Source"] = source
        return resp

    def _thumb_or_placeholder(db: Any, key: str, note: str | None = None) -> Response:
        data = views.thumbnail(db, key)
        if data is not None:
            return _jpeg(data, "thumbnail", note)
        if not views.image_rows(db, [key]):
            abort(404)
        resp = _jpeg(placeholder_jpeg(), "placeholder", "no thumbnail stored (an imported vector)")
        resp.headers["Cache-Control"] = "private, max-age=3600"
        return resp

    # <path:...>: an imported id may hold a slash; it is only ever looked up, never opened
    @server.route("/thumb/<path:sha256>")
    def thumb(sha256: str) -> Response:
        if not views.is_image_key(sha256):
            abort(404)
        return _thumb_or_placeholder(ctx.db(), sha256)

    @server.route("/image/<path:sha256>")
    def image(sha256: str) -> Response:
        if not views.is_image_key(sha256):
            abort(404)
        db = ctx.db()
        original = load_original(db, sha256, max_bytes=ctx.max_original_bytes, draft_longest=MAX_SIDE)
        if original.image is None:  # gone, changed, refused or busy: the thumbnail still exists
            return _thumb_or_placeholder(db, sha256, original.note)
        return _jpeg(_encode(original.image), "file")

    @server.route("/overlay/<path:sha256>")
    def overlay(sha256: str) -> Response:
        if not views.is_image_key(sha256):
            abort(404)
        db = ctx.db()
        png = views.mask_png(db, sha256)
        if png is None:
            abort(404)
        original = load_original(db, sha256, max_bytes=ctx.max_original_bytes, draft_longest=MAX_SIDE)
        if original.image is None:
            abort(404)
        return _jpeg(_encode(_overlay(original.image, png)), "file+mask")


def load_stored_image(db: Any, sha256: str, *, max_bytes: int | None = None) -> tuple[Any, str | None]:
    """(PIL image, 'file' | 'thumbnail') for a stored sha256, or (None, None)."""
    from embedscope.dashboard.originals import MAX_ORIGINAL_BYTES

    original = load_original(db, sha256, max_bytes=max_bytes or MAX_ORIGINAL_BYTES)
    if original.image is not None:
        return original.image, "file"
    from PIL import Image

    from embedscope.store import views

    data = views.thumbnail(db, sha256)
    if data is None:
        return None, None
    return Image.open(io.BytesIO(data)).convert("RGB"), "thumbnail"


@functools.lru_cache(maxsize=1)
def placeholder_jpeg() -> bytes:
    """A grey square saying "no thumbnail", for stored images that have none."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (128, 128), (224, 224, 224))
    draw = ImageDraw.Draw(img)
    draw.rectangle((0, 0, 127, 127), outline=(170, 170, 170), width=2)
    draw.text((22, 50), "no thumbnail", fill=(90, 90, 90))
    draw.text((34, 66), "(vector)", fill=(120, 120, 120))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def _encode(img: Any) -> bytes:
    img = img.copy()
    img.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _overlay(img: Any, mask_png: bytes) -> Any:
    """The image with the mask's foreground kept and the background dimmed and tinted."""
    from PIL import Image

    mask = Image.open(io.BytesIO(mask_png)).convert("L").resize(img.size)
    tint = Image.new("RGB", img.size, (30, 60, 160))
    dimmed = Image.blend(img.convert("RGB"), tint, 0.6)
    return Image.composite(img.convert("RGB"), dimmed, mask.point(lambda v: 255 if v else 0))
