from __future__ import annotations

import pytest

from embedscope.config import IngestSettings, load_settings
from embedscope.errors import ConfigError


def test_flags_beat_env_beat_toml_beat_defaults(tmp_path):
    toml = tmp_path / "es.toml"
    toml.write_text('[ingest]\nbatch_size = 7\nimage_size = 112\nmodel = "dinov2_vitb14"\nlabel_from_folder = true\n')
    env = {"EMBEDSCOPE_IMAGE_SIZE": "168", "EMBEDSCOPE_MODEL": "dinov2_vitl14"}
    s = load_settings(IngestSettings, {"model": "dinov2_vits14", "batch_size": None}, section="ingest",
                      config_file=toml, environ=env)
    assert s.model == "dinov2_vits14"  # flag
    assert s.image_size == 168  # env
    assert s.batch_size == 7 and s.label_from_folder is True  # toml
    assert s.weights == "hub"  # default


def test_unknown_toml_key_and_bad_values_are_config_errors(tmp_path):
    toml = tmp_path / "es.toml"
    toml.write_text("[ingest]\nbatch_sise = 7\n")
    with pytest.raises(ConfigError, match="batch_sise"):
        load_settings(IngestSettings, {}, section="ingest", config_file=toml, environ={})
    with pytest.raises(ConfigError, match="at least 1"):
        IngestSettings(thumbnail_size=0)
    with pytest.raises(ConfigError, match="model's own size"):
        IngestSettings(image_size=-1)
    assert IngestSettings(image_size=100).image_size == 100  # the model family checks the size (test_models)
    with pytest.raises(ConfigError, match="integer"):
        load_settings(IngestSettings, {}, section="ingest", environ={"EMBEDSCOPE_BATCH_SIZE": "many"})


def test_image_size_follows_the_model_unless_given():
    """0 (the default) = the model's registry size: no --image-size 256 for MobileCLIP2-S0."""
    from embedscope.ingest.encoders import with_model_image_size

    assert IngestSettings().image_size == 0
    assert with_model_image_size(IngestSettings(model="openclip_mobileclip2_s0")).image_size == 256
    assert with_model_image_size(IngestSettings(model="dinov2_vits14")).image_size == 224
    assert with_model_image_size(IngestSettings(model="dinov2_vits14", image_size=56)).image_size == 56
