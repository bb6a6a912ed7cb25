"""The dashboard's pages. Each module has ``layout(**query)`` (queries when requested) and
``register_callbacks(app, ctx)``; :func:`register` wires them into one app."""

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
)


def register(app: Any, ctx: Any) -> None:
    import importlib

    import dash

    for module, path, name, order, nav in PAGES:
        mod = importlib.import_module(f"{__name__}.{module}")
        dash.register_page(mod.__name__, path=path, name=name, order=order, layout=mod.layout, nav=nav,
                           title=f"embedscope · {name}")
        mod.register_callbacks(app, ctx)
