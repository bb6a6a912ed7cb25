"""The dashboard's trimmed plotly.js: it lists every trace type the dashboard draws, fits the
installed plotly, is served gzipped under a content-named URL that every page's HTML points
dcc.Graph at, and gives way to plotly.py's full bundle when it is not built or no longer fits."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest

from embedscope.dashboard import plotly_bundle
from embedscope.dashboard.plotly_bundle import fits, read_bundle
from tests.conftest import REPO

DASHBOARD = Path(plotly_bundle.__file__).parent
TRACES = set(json.loads((REPO / "tools" / "plotly-bundle" / "traces.json").read_text()))
built = pytest.mark.skipif(read_bundle() is None, reason="the trimmed plotly.js is not built (make install needs node and npm)")


def _trace_types_drawn() -> set[str]:
    """Trace types the dashboard's code builds: ``go.<Trace>`` references and ``"type": "<trace>"`` dicts."""
    import plotly.graph_objects as go
    from plotly.basedatatypes import BaseTraceType

    classes = {name: getattr(go, name) for name in dir(go) if name[:1].isupper()}  # plotly imports them lazily
    trace_classes = {name: cls for name, cls in classes.items() if isinstance(cls, type) and issubclass(cls, BaseTraceType)}
    every_type = {cls().type for cls in trace_classes.values()}
    found: set[str] = set()
    for source in DASHBOARD.rglob("*.py"):
        text = source.read_text()
        found |= {trace_classes[n]().type for n in re.findall(r"\bgo\.(\w+)", text) if n in trace_classes}
        found |= {t for t in re.findall(r"""["']type["']\s*:\s*["'](\w+)["']""", text) if t in every_type}
    return found


def test_the_bundle_lists_every_trace_type_the_dashboard_draws():
    drawn = _trace_types_drawn()
    assert {"scattergl", "scatter3d", "bar", "heatmap", "image"} <= drawn  # the scan sees the builders
    assert drawn <= TRACES, f"add {sorted(drawn - TRACES)} to tools/plotly-bundle/traces.json"


@built
def test_the_built_bundle_holds_the_listed_traces_and_fits_the_installed_plotly():
    bundle = read_bundle()
    assert bundle.traces == TRACES
    assert fits(bundle, plotly_bundle.installed_plotlyjs_version())
    assert not fits(bundle, "99.0.0")
    assert len(bundle.digest) == 16 and bundle.file_name == f"plotly-{bundle.digest}.min.js"


@pytest.fixture
def app(tmp_path):
    from embedscope.dashboard.app import create_app
    from embedscope.store.db import Database

    Database(tmp_path / "db", create=True)
    return create_app(str(tmp_path / "db"), warm_map=False)


@built
def test_pages_point_dcc_graph_at_the_bundle_and_the_map_fetches_it_with_its_html(app):
    client = app.server.test_client()
    url = f"/_embedscope/{read_bundle().file_name}"
    home, sql = client.get("/").get_data(as_text=True), client.get("/sql").get_data(as_text=True)
    for html in (home, sql):
        assert url in html and "plotly.min.js" not in html
        assert html.index(url) < html.index("dash_renderer")  # defined before dcc.Graph can look for it
    assert " load();" in home and " load();" not in sql  # the other pages fetch it when a graph mounts

    zipped = client.get(url, headers={"Accept-Encoding": "gzip, deflate"})
    assert zipped.status_code == 200 and zipped.headers["Content-Encoding"] == "gzip"
    assert "immutable" in zipped.headers["Cache-Control"] and zipped.headers["Vary"] == "Accept-Encoding"
    assert gzip.decompress(zipped.get_data()) == read_bundle().path.read_bytes()
    assert len(zipped.get_data()) < 0.4 * read_bundle().path.stat().st_size
    plain = client.get(url, headers={"Accept-Encoding": "identity"})
    assert "Content-Encoding" not in plain.headers and plain.get_data() == read_bundle().path.read_bytes()


def _serves_the_full_bundle(app) -> bool:
    client = app.server.test_client()
    home = client.get("/").get_data(as_text=True)
    bundle = read_bundle()
    served = bundle is not None and client.get(f"/_embedscope/{bundle.file_name}").mimetype != "text/html"  # else Dash's shell
    return "_dash-component-suites/plotly/package_data/plotly.min.js" in home and "_embedscope/" not in home and not served


def test_without_a_fitting_bundle_pages_get_plotly_pys_full_one(tmp_path, monkeypatch, caplog):
    import plotly.offline

    from embedscope.dashboard.app import create_app
    from embedscope.store.db import Database

    Database(tmp_path / "db", create=True)
    assert _serves_the_full_bundle(create_app(str(tmp_path / "db"), warm_map=False, plotly="full"))
    assert "make plotly-bundle" not in caplog.text  # asked for: nothing to warn about
    monkeypatch.setattr(plotly_bundle, "BUNDLE_PATH", tmp_path / "not-built.min.js")
    assert _serves_the_full_bundle(create_app(str(tmp_path / "db"), warm_map=False))
    assert "not built" in caplog.text
    if read_bundle() is not None:
        monkeypatch.undo()
        monkeypatch.setattr(plotly.offline, "get_plotlyjs_version", lambda: "99.0.0")
        assert _serves_the_full_bundle(create_app(str(tmp_path / "db"), warm_map=False))
        assert "the trimmed bundle is plotly.js" in caplog.text
