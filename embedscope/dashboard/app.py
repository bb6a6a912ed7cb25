"""The Dash app factory: ``create_app(db_path)`` → a ``dash.Dash`` whose Flask server is
``app.server``. Nothing is read at import; every page queries when it is requested.

>>> app = create_app("demo/db")                     # doctest: +SKIP
>>> app.run(host="127.0.0.1", port=8050)            # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from embedscope.dashboard.context import CONFIG_KEY, DEFAULT_MAX_POINTS, DashboardContext

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def create_app(db_path: str, *, max_points: int = DEFAULT_MAX_POINTS, auth: str | None = None,
               neighbours_k: int = 8, query_flags: dict[str, Any] | None = None,
               query_config: str | None = None, storage_options: dict[str, str] | None = None) -> Any:
    """Build the dashboard for the database at ``db_path`` (read-only).

    ``max_points``: the map shows a fixed random sample beyond this many points, and says so.
    ``auth``: ``"user:password"`` to require HTTP basic auth on every request.
    ``query_flags`` / ``query_config``: how the Search page embeds an uploaded image
    (``image_size``, ``preprocess``, ``device``, ``weights``; a TOML file with an ``[ingest]``
    section): they must match the ingest, as for ``embedscope similar FILE``.
    ``storage_options``: for a database (or image sources) on an object store.
    """
    import dash
    from dash import dcc, html

    from embedscope.dashboard import ids, pages
    from embedscope.dashboard.encoders import EncoderCache
    from embedscope.dashboard.routes import install_basic_auth, register_routes
    from embedscope.store.db import Database

    Database(db_path, storage_options=storage_options)  # fail now, with the CLI's one-line error, if there is no database
    ctx = DashboardContext(str(db_path), max_points=max_points, neighbours_k=neighbours_k,
                           encoders=EncoderCache(query_flags, query_config), storage_options=dict(storage_options or {}))
    app = dash.Dash(__name__, use_pages=True, pages_folder="", title="embedscope",
                    suppress_callback_exceptions=True, update_title=None)
    app.server.config[CONFIG_KEY] = ctx
    if auth:
        install_basic_auth(app.server, auth)
    register_routes(app.server, ctx)
    pages.register(app, ctx)

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
            html.Div(dash.page_container, style={"padding": "8px 12px"}),
        ], style={"fontFamily": "system-ui, sans-serif"})

    app.layout = shell
    return app


def _banner(ctx: DashboardContext) -> Any:
    """A red banner while any stored embeddings came from random weights."""
    from dash import html

    from embedscope.dashboard import ids
    from embedscope.store.views import random_weight_sets

    sets = random_weight_sets(ctx.db())
    if not sets:
        return html.Div(id=ids.BANNER, style={"display": "none"})
    return html.Div(
        f"RANDOM WEIGHTS: the embeddings of {', '.join(sets)} came from an untrained network "
        "(--weights random). Maps, clusters, neighbours and flags are meaningless for real use.",
        id=ids.BANNER, style={"background": "#b71c1c", "color": "white", "padding": "6px 12px", "fontWeight": "bold"})


def is_loopback(host: str) -> bool:
    return host in LOOPBACK or host.startswith("127.")
