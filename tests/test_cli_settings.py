"""`analyze` settings go through the same loader as ingest: flag > env > TOML > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from embedscope.cli import build_parser
from embedscope.cli.analyze import analysis_params
from embedscope.errors import ConfigError


def params(*argv: str):
    return analysis_params(build_parser().parse_args(["analyze", "--db", "x", *argv]))


def test_defaults_come_from_the_dataclasses(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in __import__("os").environ if k.startswith("EMBEDSCOPE_ANALYZE_")]:
        monkeypatch.delenv(name)
    p = params()
    assert p.fit_sample == 200_000 and p.k is None and p.novelty.z_threshold == 3.0
    assert p.cluster == ("hdbscan", "kmeans") and p.duplicates.cosine_threshold == 0.03


def test_flag_over_env_over_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "es.toml"
    toml.write_text('[analyze]\nfit_sample = 700\nseed = 3\ncluster = ["kmeans"]\ndims = [2, 3]\n'
                    '[analyze.novelty]\nz_threshold = 2.5\nknn_k = 7\n[analyze.duplicates]\nhamming_threshold = 4\n')
    monkeypatch.setenv("EMBEDSCOPE_ANALYZE_FIT_SAMPLE", "900")
    monkeypatch.setenv("EMBEDSCOPE_ANALYZE_NOVELTY_KNN_K", "9")
    monkeypatch.setenv("EMBEDSCOPE_ANALYZE_K", "auto")
    monkeypatch.setenv("EMBEDSCOPE_ANALYZE_PROJECT", "pca,umap")
    p = params("--config", str(toml), "--seed", "5")
    assert p.seed == 5  # flag beats TOML
    assert p.fit_sample == 900  # env beats TOML
    assert p.cluster == ("kmeans",) and p.dims == (2, 3)  # TOML lists
    assert p.project == ("pca", "umap")  # an env list
    assert p.k is None  # "auto" means the automatic choice
    assert p.novelty.z_threshold == 2.5 and p.novelty.knn_k == 9
    assert p.duplicates.hamming_threshold == 4


def test_ingest_env_does_not_leak_into_analyze(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSCOPE_BATCH_SIZE", "64")  # ingest's model batch
    assert params().batch_size == 16_384


def test_bad_values_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBEDSCOPE_ANALYZE_FIT_SAMPLE", "lots")
    with pytest.raises(ConfigError, match="fit_sample: expected an integer"):
        params()
    monkeypatch.delenv("EMBEDSCOPE_ANALYZE_FIT_SAMPLE")
    toml = tmp_path / "bad.toml"
    toml.write_text("[analyze]\nfit_sampel = 5\n")
    with pytest.raises(ConfigError, match="unknown setting"):
        params("--config", str(toml))
    with pytest.raises(ConfigError, match="--dims"):
        params("--dims", "two")
