"""Server-side routes for image bytes, and optional HTTP basic auth.

Images are served ONLY by sha256: the route looks the content up in the database and reads
the path stored there (or the stored thumbnail). No request parameter is ever used as a
path. Every response is re-encoded by Pillow after the safe decoder, never the raw file.
"""

from __future__ import annotations

import hmac
import io
from typing import Any

from embedscope.dashboard.context import DashboardContext

MAX_SIDE = 2048  # full images are downscaled to this longest side for the browser
MAX_PIXELS = 200_000_000


def register_routes(server: Any, ctx: DashboardContext) -> None:
    """Add /thumb/<sha256>, /image/<sha256> and /overlay/<sha256> to the Flask ``server``."""
    from flask import Response, abort

    from embedscope.store import views

    def _jpeg(data: bytes, source: str) -> Response:
        resp = Response(data, mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "private, max-age=3600"  # content-addressed: sha256 never changes
        resp.headers["X-Embedscope-Source"] = source
        return resp

    @server.route("/thumb/<sha256>")
    def thumb(sha256: str) -> Response:
        if not views.is_sha256(sha256):
            abort(404)
        data = views.thumbnail(ctx.db(), sha256)
        if data is None:
            abort(404)
        return _jpeg(data, "thumbnail")

    @server.route("/image/<sha256>")
    def image(sha256: str) -> Response:
        if not views.is_sha256(sha256):
            abort(404)
        db = ctx.db()
        img = _load_stored(db, sha256)
        if img is None:  # every stored path is gone or changed: the thumbnail still exists
            data = views.thumbnail(db, sha256)
            if data is None:
                abort(404)
            return _jpeg(data, "thumbnail")
        return _jpeg(_encode(img), "file")

    @server.route("/overlay/<sha256>")
    def overlay(sha256: str) -> Response:
        if not views.is_sha256(sha256):
            abort(404)
        db = ctx.db()
        png = views.mask_png(db, sha256)
        img = _load_stored(db, sha256)
        if png is None or img is None:
            abort(404)
        return _jpeg(_encode(_overlay(img, png)), "file+mask")


def _load_stored(db: Any, sha256: str) -> Any:
    """The decoded image from the first stored path whose bytes still hash to ``sha256``."""
    import hashlib

    from embedscope.errors import DecodeError, EmbedscopeError
    from embedscope.ingest.decode import decode_bytes
    from embedscope.store import views

    from embedscope.objectstore import is_uri, read_bytes

    for path in views.stored_paths(db, sha256):
        try:
            if is_uri(path):  # an object-store source (s3://...): same credentials as the database
                data = read_bytes(path, db.storage_options)
            else:
                with open(path, "rb") as fh:
                    data = fh.read()
        except (OSError, EmbedscopeError):
            continue
        if hashlib.sha256(data).hexdigest() != sha256:  # the file changed since ingest
            continue
        try:
            return decode_bytes(data, max_pixels=MAX_PIXELS).image
        except DecodeError:
            continue
    return None


def load_stored_image(db: Any, sha256: str) -> tuple[Any, str | None]:
    """(PIL image, 'file' | 'thumbnail') for a stored sha256, or (None, None)."""
    img = _load_stored(db, sha256)
    if img is not None:
        return img, "file"
    from PIL import Image

    from embedscope.store import views

    data = views.thumbnail(db, sha256)
    if data is None:
        return None, None
    return Image.open(io.BytesIO(data)).convert("RGB"), "thumbnail"


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


def install_basic_auth(server: Any, auth: str) -> None:
    """Require HTTP basic auth ``user:password`` on every request of ``server``."""
    from flask import Response, request

    user, _, password = auth.partition(":")

    @server.before_request
    def _check() -> Response | None:
        given = request.authorization
        ok = (given is not None and given.type == "basic"
              and hmac.compare_digest((given.username or "").encode(), user.encode())
              and hmac.compare_digest((given.password or "").encode(), password.encode()))
        if ok:
            return None
        return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="embedscope"'})
