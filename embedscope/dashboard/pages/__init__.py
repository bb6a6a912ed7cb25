"""The dashboard's pages. Each module has ``layout(**query)`` (queries when requested; the URL's
query parameters arrive as keyword arguments) and ``register_callbacks(app, ctx)`` (``ctx``: the
app's :class:`~embedscope.dashboard.context.DashboardContext`: database handle, limits, the one
encoder cache); :func:`register` wires them into one app.

A page module stays thin: its layout and callbacks read through ``embedscope.store`` (runs via
``store.runs``, other reads via ``store.views`` / ``store.queries``) and hand the results to pure
builders in ``shaping`` (data), ``figures`` / ``cluster_figures`` (Plotly) and ``components``
(Dash layout). Component ids are constants in ``ids``. To add a page: a module here with those
two functions, one row in :data:`PAGES`, its ids in ``ids.py``.
"""

from __future__ import annotations

from typing import Any

# (module, path, name, order, shown in the nav bar)
PAGES = (
    ("map", "/", "Map", 0, True),
    ("clusters", "/clusters", "Clusters", 1, True),
    ("flags", "/flags", "Flags", 2, True),
    ("metrics", "/metrics", "Metrics", 3, True),
    ("embeddings", "/embeddings", "Embeddings", 4, True),
    ("patches", "/patches", "Within-image", 5, True),
    ("sql", "/sql", "SQL", 6, True),
    ("search", "/search", "Search", 7, True),
    ("detail", "/detail", "Image", 8, False),
    ("review", "/review", "Review", 9, True),
    ("drops", "/drops", "Drops", 10, True),
)


def register(app: Any, ctx: Any) -> None:
    import importlib

    import dash

    for module, path, name, order, nav in PAGES:
        mod = importlib.import_module(f"{__name__}.{module}")
        dash.register_page(mod.__name__, path=path, name=name, order=order, layout=mod.layout, nav=nav,
                           title=f"embedscope · {name}")
        mod.register_callbacks(app, ctx)
    from embedscope.dashboard import run_picker, sidebar

    run_picker.register_callbacks(app)
    sidebar.register_callbacks(app, ctx)
