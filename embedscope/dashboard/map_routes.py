"""``/map-thumb/<sha256>``: the thumbnail the map draws for a point: the stored one, or a
placeholder tile for an id without an image (imported vectors have no thumbnail), so the map
never shows a broken picture. Looked up by sha256 only, as ``/thumb`` is."""

from __future__ import annotations

import functools
import io
from typing import Any


@functools.lru_cache(maxsize=1)
def placeholder_jpeg() -> bytes:
    """A grey tile saying "no image"."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (96, 96), (226, 226, 226))
    draw = ImageDraw.Draw(img)
    draw.rectangle([2, 2, 93, 93], outline=(160, 160, 160), width=2)
    draw.text((22, 40), "no image", fill=(110, 110, 110))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def register_map_routes(server: Any, ctx: Any) -> None:
    from flask import Response, abort

    from embedscope.store import views

    @server.route("/map-thumb/<sha256>")
    def map_thumb(sha256: str) -> Response:
        if not views.is_image_key(sha256):  # imported vectors have ids, not sha256
            abort(404)
        from embedscope.dashboard.map_state import current

        known, data = current().thumbnail(sha256)
        if not known:
            data = views.thumbnail(ctx.db(), sha256)
        resp = Response(data or placeholder_jpeg(), mimetype="image/jpeg")
        resp.headers["Cache-Control"] = "private, max-age=3600"
        resp.headers["X-Embedscope-Source"] = "thumbnail" if data else "placeholder"
        return resp
