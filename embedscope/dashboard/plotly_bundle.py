"""The dashboard's plotly.js: a build with only the trace types the dashboard draws
(``tools/plotly-bundle``; ``make install`` builds it when node and npm are there). It is
2.1 MB instead of plotly.py's 4.8 MB and starts about 1.3 s sooner in headless Chromium with
software GL, which is most of the map's first visit.

Every page's HTML defines ``window.Plotly`` as a promise of it, which dcc.Graph waits on
instead of fetching plotly.py's full bundle; the map's page starts the fetch with its HTML, the
others when their first graph mounts. It is served gzipped (the build writes both), at a URL
that names its content, so a browser caches it for good. When it is not built, or the installed
plotly.py carries another major version of plotly.js, the dashboard uses plotly.py's bundle as
Dash would, and logs why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

BUNDLE_PATH = Path(__file__).parent / "static" / "plotly-embedscope.min.js"
_BANNER = re.compile(r"plotly\.js v(?P<version>[\w.-]+) .*\| traces: (?P<traces>[a-z0-9,]+)")


@dataclass(frozen=True)
class PlotlyBundle:
    """The built file, what its first line says it holds, and a digest of its bytes."""

    path: Path
    version: str
    traces: frozenset[str]
    digest: str

    @property
    def file_name(self) -> str:
        return f"plotly-{self.digest}.min.js"

    @property
    def gzip_path(self) -> Path:
        return Path(f"{self.path}.gz")


def read_bundle(path: Path = BUNDLE_PATH) -> PlotlyBundle | None:
    """The bundle at ``path`` (its first line names the plotly.js version and the traces), or
    None when it is not built."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    m = _BANNER.search(data[:data.find(b"\n")].decode("utf-8", "replace"))
    if not m:
        raise ValueError(f"{path} does not start with the plotly.js version and traces line that build.js writes")
    return PlotlyBundle(path, m["version"], frozenset(m["traces"].split(",")), hashlib.sha256(data).hexdigest()[:16])


def installed_plotlyjs_version() -> str:
    from plotly.offline import get_plotlyjs_version

    return get_plotlyjs_version()


def fits(bundle: PlotlyBundle, installed: str) -> bool:
    """Figures from plotly.py built for plotly.js ``installed`` render with ``bundle``: same major."""
    return bundle.version.split(".")[0] == installed.split(".")[0]


def loader_script(url: str, *, eager: bool) -> str:
    """``window.Plotly`` as a promise of the bundle at ``url``: fetched now when ``eager``, else
    when something first waits on it (dcc.Graph does ``Promise.resolve(window.Plotly)``). The
    bundle's own ``var Plotly = …`` replaces the promise with plotly.js once it has run."""
    return ("<script>(function () { if (window.Plotly) return; var loading = null;"
            "function load() { return loading || (loading = new Promise(function (ok, fail) {"
            "var s = document.createElement('script'); s.src = %s;"
            "s.onload = function () { ok(window.Plotly); }; s.onerror = fail; document.head.appendChild(s); })); }"
            "window.Plotly = {then: function (ok, fail) { return load().then(ok, fail); }};%s"
            "})();</script>\n" % (json.dumps(url), " load();" if eager else ""))


def install_plotly_bundle(app: Any, *, eager_paths: tuple[str, ...], trimmed: bool = True) -> PlotlyBundle | None:
    """Serve the bundle and put its loader in every page's HTML, fetching it at once on
    ``eager_paths``. Not ``trimmed``, not built, or not fitting the installed plotly: None, and
    the same loader for plotly.py's full bundle (the URL Dash itself would fetch)."""
    from flask import request

    bundle = read_bundle(BUNDLE_PATH) if trimmed else None
    installed = installed_plotlyjs_version()
    if trimmed and bundle is None:
        log.warning("dashboard: using plotly.py's full plotly.js: the trimmed bundle is not built "
                    "(install node and npm, then `make plotly-bundle`)")
    elif bundle is not None and not fits(bundle, installed):
        log.warning("dashboard: using plotly.py's full plotly.js %s: the trimmed bundle is plotly.js %s "
                    "(rebuild it with `make plotly-bundle`)", installed, bundle.version)
        bundle = None
    if bundle is not None:
        _serve(app, bundle)
        url = f"{app.config.requests_pathname_prefix}_embedscope/{bundle.file_name}"
    else:
        url = f"{app.config.requests_pathname_prefix}_dash-component-suites/plotly/package_data/plotly.min.js"
    eager, lazy = loader_script(url, eager=True), loader_script(url, eager=False)
    plain_index = app.interpolate_index

    def interpolate_index(**kwargs: Any) -> str:
        kwargs["scripts"] = (eager if request.path in eager_paths else lazy) + kwargs["scripts"]
        return plain_index(**kwargs)

    app.interpolate_index = interpolate_index
    return bundle


def _serve(app: Any, bundle: PlotlyBundle) -> None:
    from flask import Response, request

    plain, zipped = bundle.path.read_bytes(), bundle.gzip_path.read_bytes()

    @app.server.route(f"{app.config.routes_pathname_prefix}_embedscope/{bundle.file_name}")
    def plotly_bundle() -> Response:
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        resp = Response(zipped if gz else plain, mimetype="text/javascript")
        if gz:
            resp.headers["Content-Encoding"] = "gzip"
        resp.headers["Vary"] = "Accept-Encoding"
        resp.headers["Cache-Control"] = "public, max-age=31536000, immutable"  # the URL names the content
        return resp
