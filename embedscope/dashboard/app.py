"""The Dash app factory: ``create_app(db_path)`` → a ``dash.Dash`` whose Flask server is
``app.server``; :func:`serve` runs it on a production WSGI server (waitress). Nothing is read
at import; every page queries when it is requested.

>>> app = create_app("demo/db")                     # doctest: +SKIP
>>> serve(app, host="127.0.0.1", port=8050)         # doctest: +SKIP
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
from typing import Any

from embedscope.dashboard.context import (
    CONFIG_KEY,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_ORIGINAL_BYTES,
    DEFAULT_MAX_POINTS,
    DEFAULT_MAX_UPLOAD_PIXELS,
    DashboardContext,
)

log = logging.getLogger(__name__)

DEFAULT_THREADS = 8  # waitress worker threads: slow queries or decodes do not hold up the rest


def create_app(db_path: str, *, max_points: int = DEFAULT_MAX_POINTS, auth: str | tuple[str, str] | None = None,
               neighbours_k: int = 8, query_flags: dict[str, Any] | None = None,
               query_config: str | None = None, storage_options: dict[str, str] | None = None,
               sql_limits: Any = None, max_original_bytes: int = DEFAULT_MAX_ORIGINAL_BYTES,
               max_upload_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS,
               max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, host: str = "127.0.0.1", warm_map: bool = True,
               plotly: str = "trimmed") -> Any:
    """Build the dashboard for the database at ``db_path`` (read-only).

    ``max_points``: a 2-D map draws points up to this many in view, a density image beyond; a
    3-D map shows a fixed random sample of this many, and says so.
    ``auth``: ``"user:password"`` or ``(user, password)`` to require HTTP basic auth on every
    request (wrong passwords back off per client, see :mod:`embedscope.dashboard.auth`).
    ``query_flags`` / ``query_config``: how the Search page embeds an uploaded image
    (``image_size``, ``preprocess``, ``device``, ``weights``; a TOML file with an ``[ingest]``
    section): they must match the ingest, as for ``embedscope similar FILE``.
    ``storage_options``: for a database (or image sources) on an object store.
    ``sql_limits``: the SQL page's :class:`~embedscope.store.sql.SqlLimits` (default
    ``DASHBOARD_LIMITS``). ``max_original_bytes``: /image serves originals up to this size.
    ``max_upload_pixels``: the Search page refuses larger uploads. ``max_body_bytes``: larger
    request bodies get 413 before they are read. ``host``: the address it will be served on;
    it writes tags only when that is loopback or ``auth`` is set. ``warm_map``: index the latest
    run's map (and compile the density renderer) in the background at start. ``plotly``:
    ``"trimmed"`` (the dashboard's own plotly.js build, see :mod:`embedscope.dashboard.plotly_bundle`)
    or ``"full"`` (plotly.py's).
    """
    import dash
    from dash import dcc, html

    from embedscope.dashboard import ids, pages
    from embedscope.dashboard.auth import install_basic_auth, parse_credentials
    from embedscope.dashboard.encoders import EncoderCache
    from embedscope.dashboard.map_routes import register_map_routes
    from embedscope.dashboard.map_state import install as install_map_state
    from embedscope.dashboard.map_view import warm_latest_map
    from embedscope.dashboard.plotly_bundle import install_plotly_bundle
    from embedscope.dashboard.routes import register_routes
    from embedscope.store.db import Database
    from embedscope.store.search_cache import SearchIndexCache

    Database(db_path, storage_options=storage_options)  # fail now, with the CLI's one-line error, if there is no database
    ctx = DashboardContext(str(db_path), max_points=max_points, neighbours_k=neighbours_k,
                           encoders=EncoderCache(query_flags, query_config), storage_options=dict(storage_options or {}),
                           sql_limits=sql_limits, max_original_bytes=max_original_bytes,
                           max_upload_pixels=max_upload_pixels,
                           # build=False: use the graphs `embedscope index` saved, never stall a click building one
                           search=SearchIndexCache(build=False),
                           writes_allowed=bool(auth) or is_loopback(host))
    app = dash.Dash(__name__, use_pages=True, pages_folder="", title="embedscope",
                    suppress_callback_exceptions=True, update_title=None, on_error=_callback_error)
    app.server.config[CONFIG_KEY] = ctx
    install_plotly_bundle(app, eager_paths=("/",), trimmed=plotly == "trimmed")  # "/": the map
    app.server.config["MAX_CONTENT_LENGTH"] = max_body_bytes
    if auth:
        install_basic_auth(app.server, parse_credentials(auth, "auth") if isinstance(auth, str) else tuple(auth))
    register_routes(app.server, ctx)
    register_map_routes(app.server, ctx)
    map_state = install_map_state(app.server)
    pages.register(app, ctx)
    if warm_map:
        threading.Thread(target=warm_latest_map, args=(ctx, map_state), name="map-warm-up", daemon=True).start()

    def shell() -> Any:
        return html.Div([
            dcc.Location(id=ids.URL, refresh="callback-nav"),
            dcc.Store(id=ids.SELECTION, storage_type="session"),
            html.Div([html.B("embedscope", style={"marginRight": "18px"}),
                      *[dcc.Link(p["name"], href=p["relative_path"], style={"marginRight": "14px"},
                                 id=ids.nav_link(p["name"]))
                        for p in dash.page_registry.values() if p.get("nav", True)]],
                     id=ids.NAV, style={"padding": "8px 12px", "borderBottom": "1px solid #ddd", "background": "#fafafa"}),
            _banner(ctx),
            html.Div(id=ids.CALLBACK_ERROR, style={"color": "#b71c1c", "padding": "0 12px", "fontSize": "13px"}),
            # anything that builds a page for over half a second says so
            dcc.Loading(html.Div(dash.page_container, style={"padding": "8px 12px"}), id=ids.PAGE_LOADING,
                        delay_show=500, show_initially=False, target_components={"_pages_content": "children"},
                        overlay_style={"visibility": "visible", "opacity": 0.6},
                        custom_spinner=html.Div("loading the page…", style=_SPINNER)),
        ], style={"fontFamily": "system-ui, sans-serif"})

    app.layout = shell
    return app


_SPINNER = {"position": "fixed", "top": "48px", "right": "16px", "background": "#fff4e5", "border": "1px solid #ffb74d",
            "padding": "4px 10px", "borderRadius": "4px", "fontSize": "13px", "zIndex": 1000}


def _callback_error(exc: Exception) -> None:
    """Dash's ``on_error``: malformed input (a non-numeric k, an unknown run id, a bad sha) is one
    line at the top of the page, outputs unchanged, HTTP 200 — not a 500. Bugs still raise."""
    from dash import set_props

    from embedscope.dashboard import ids
    from embedscope.errors import EmbedscopeError

    if isinstance(exc, EmbedscopeError):
        text = exc.one_line()
    elif isinstance(exc, (ValueError, TypeError, KeyError)):
        text = f"invalid input: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    else:
        raise exc
    log.info("callback refused its input: %s", text)
    set_props(ids.CALLBACK_ERROR, {"children": text})


def _banner(ctx: DashboardContext) -> Any:
    """A red banner while any stored embeddings came from random weights."""
    from dash import html

    from embedscope.dashboard import ids
    from embedscope.dashboard.map_page_cache import cached
    from embedscope.store.views import random_weight_sets

    db = ctx.db()  # every page's shell asks: read the weights column (a whole-table scan) once per database state
    sets = cached(db, ("random weights",), lambda: random_weight_sets(db))
    if not sets:
        return html.Div(id=ids.BANNER, style={"display": "none"})
    return html.Div(
        f"RANDOM WEIGHTS: the embeddings of {', '.join(sets)} came from an untrained network "
        "(--weights random). Maps, clusters, neighbours and flags are meaningless for real use.",
        id=ids.BANNER, style={"background": "#b71c1c", "color": "white", "padding": "6px 12px", "fontWeight": "bold"})


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` resolves to is a loopback address (``127.0.0.0/8``,
    ``::1``). A name that does not resolve, or that resolves to any other address, is not:
    ``127.0.0.1.nip.io`` is judged by where it points, not by how it is spelled."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError, OSError):
        return False
    addresses = {info[4][0].split("%", 1)[0] for info in infos}
    try:
        return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)
    except ValueError:
        return False


def serve(app: Any, *, host: str, port: int, threads: int = DEFAULT_THREADS) -> None:
    """Serve ``app`` with waitress (a production WSGI server) until interrupted."""
    import waitress

    max_body = app.server.config.get("MAX_CONTENT_LENGTH") or DEFAULT_MAX_BODY_BYTES
    listen = f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"
    waitress.serve(app.server, listen=listen, threads=threads, max_request_body_size=max_body,
                   ident="embedscope", _quiet=True)
