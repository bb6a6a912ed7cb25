from __future__ import annotations

import json

import pytest

from embedscope.demo import build_demo_drop
from tests.conftest import run_cli


@pytest.mark.slow
def test_demo_drop_ingests_to_the_counts_it_promises(tmp_path):
    expected = build_demo_drop(tmp_path / "drop")
    out = json.loads(run_cli("ingest", str(tmp_path / "drop"), "--db", str(tmp_path / "db"), "--weights", "random",
                             "--image-size", "56", "--label-from-folder", "--json").stdout)
    assert out["scanned"] == expected["files"]
    assert out["new"] == expected["images"]
    assert out["duplicates"] == expected["duplicates"]
    assert out["quarantined"] == expected["quarantined"]
