"""``/map-thumb/<sha256>``: the thumbnail the map draws for a point: the stored one, or a
placeholder tile (``routes.placeholder_jpeg``, the one ``/thumb`` serves) for an id without an
image (imported vectors have no thumbnail), so the map never shows a broken picture."""

from __future__ import annotations

from typing import Any


def register_map_routes(server: Any, ctx: Any) -> None:
    from flask import Response, abort

    from embedscope.dashboard.routes import placeholder_jpeg
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
