"""Encoder registry and DINOv2 with random weights (never a hub download)."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.errors import ConfigError, UnknownModelError, WeightsNotFoundError
from embedscope.models.encoder import Encoder
from embedscope.models.factory import create_encoder, encoder_family
from embedscope.models.registry import ENCODERS, FAMILY_MODULES, get_encoder_config, list_encoders
from embedscope.models.weights import resolve_weights

LARGE = {"dinov2_vitl14", "dinov2_vitl14_reg", "dinov2_vitg14", "dinov2_vitg14_reg", "openclip_vitl14"}
DINOV2 = sorted(name for name, cfg in ENCODERS.items() if cfg.family == "dinov2")


def test_unknown_model_lists_known_ones():
    with pytest.raises(UnknownModelError) as err:
        get_encoder_config("dinov3_huge")
    assert "dinov2_vits14" in err.value.hint and "dinov2_vitg14_reg" in err.value.hint


def test_registry_has_all_sizes_with_and_without_registers():
    expected = {f"dinov2_vit{s}14{r}" for s in "sblg" for r in ("", "_reg")}
    assert {n for n in list_encoders() if n.startswith("dinov2")} == expected


@pytest.mark.parametrize("name", DINOV2)  # the openclip entries: tests/test_openclip.py
def test_every_registered_config_matches_its_timm_architecture(name):
    """Built on the meta device: the architecture's real shape, no memory, no weights."""
    import timm
    import torch

    cfg = ENCODERS[name]
    with torch.device("meta"):
        model = timm.create_model(cfg.arch, pretrained=False, num_classes=0, img_size=224)
    assert model.num_features == cfg.dim
    assert model.num_prefix_tokens == cfg.num_prefix_tokens
    assert model.patch_embed.patch_size == (cfg.patch_size, cfg.patch_size)


def test_hub_weights_offline_fail_fast_with_the_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-embedscope-test")
    cfg = get_encoder_config("dinov2_vits14")
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_weights("hub", repo_id=cfg.hf_hub_id, filename=cfg.weights_file, what=cfg.name)
    hint = err.value.hint
    assert "--weights PATH" in hint and cfg.hf_hub_id in hint and "model.safetensors" in hint


def test_missing_weights_file_is_clear(tmp_path):
    with pytest.raises(WeightsNotFoundError, match="not found"):
        resolve_weights(str(tmp_path / "nope.safetensors"), repo_id="x", filename="y", what="z")


@pytest.fixture(scope="module")
def small_encoder():
    return create_encoder("dinov2_vits14", weights="random", device="cpu", image_size=112, precision="fp32")


@pytest.mark.slow
def test_embedding_equals_direct_timm_forward(small_encoder):
    import timm
    import torch
    import torch.nn.functional as F

    from tests.conftest import make_photo

    pixels = np.stack([small_encoder.preprocessor(make_photo(i)) for i in range(3)])
    ours = small_encoder.embed(pixels, patch_mean=True)
    torch.manual_seed(0)
    ref = timm.create_model("vit_small_patch14_dinov2.lvd142m", pretrained=False, num_classes=0, img_size=112,
                            init_values=1.0).eval()
    with torch.inference_mode():
        x = torch.from_numpy(pixels)
        expected = F.normalize(ref(x), dim=-1).numpy()
        tokens = ref.forward_features(x)
        expected_mean = F.normalize(tokens[:, 1:].mean(1), dim=-1).numpy()
    np.testing.assert_allclose(ours.cls, expected, atol=1e-5)
    np.testing.assert_allclose(ours.patch_mean, expected_mean, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(ours.cls, axis=1), 1.0, atol=1e-5)
    # random weights still see the input: different images, clearly different vectors
    assert float(ours.cls[0] @ ours.cls[1]) < 0.99


@pytest.mark.slow
def test_local_weights_file_loads_and_is_recorded_by_hash(tmp_path, small_encoder):
    import torch
    from safetensors.torch import save_file

    from embedscope.hashing import sha256_file
    from tests.conftest import make_photo

    sd = {k: v.contiguous() for k, v in small_encoder.model.state_dict().items()}
    with torch.no_grad():
        sd["norm.bias"] = sd["norm.bias"] + 0.5  # distinguishable from the seeded random weights
    path = tmp_path / "w.safetensors"
    save_file(sd, str(path))
    source = resolve_weights(str(path), repo_id="x", filename="model.safetensors", what="dinov2_vits14")
    assert source.kind == "file" and source.label == f"file:{sha256_file(path)}"
    enc = create_encoder("dinov2_vits14", weights=str(path), device="cpu", image_size=112, precision="fp32")
    assert torch.allclose(enc.model.state_dict()["norm.bias"], sd["norm.bias"])
    x = np.stack([enc.preprocessor(make_photo(1))])
    assert not np.allclose(enc.embed(x).cls, small_encoder.embed(x).cls)


def test_preprocessor_shape_and_normalisation():
    from PIL import Image

    from embedscope.models.preprocess import Preprocessor

    cfg = get_encoder_config("dinov2_vits14")
    pre = Preprocessor(224, cfg.mean, cfg.std)
    out = pre(Image.new("RGB", (500, 300), (124, 116, 104)))  # ~ the ImageNet mean colour
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    assert np.abs(out).max() < 0.02
    xray = Preprocessor(224, cfg.mean, cfg.std, mode="xray")(Image.new("RGB", (300, 300), (10, 200, 30)))
    assert np.allclose(xray[0] * cfg.std[0] + cfg.mean[0], xray[1] * cfg.std[1] + cfg.mean[1], atol=1e-5)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n
                                  for n in sorted(ENCODERS)])
def test_every_registered_encoder_builds_and_embeds(name):
    """Every registry entry, through the factory, at the smallest input its family takes."""
    from tests.conftest import make_photo

    cfg = get_encoder_config(name)
    size = smallest_image_size(cfg)
    enc = create_encoder(name, weights="random", device="cpu", image_size=size, precision="fp32")
    assert isinstance(enc, Encoder)
    assert (enc.name, enc.family, enc.dim, enc.weights.label) == (name, cfg.family, cfg.dim, "random")
    assert enc.text is None or hasattr(enc.text, "embed_texts")
    vectors = enc.embed_images([enc.preprocessor(make_photo(i)) for i in range(2)])
    assert vectors.shape == (2, cfg.dim) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def smallest_image_size(cfg) -> int:
    """The smallest input side ``cfg``'s family accepts (asked of the family, no rule copied here)."""
    family = encoder_family(cfg)
    for size in range(1, cfg.image_size + 1):
        try:
            family.check_image_size(cfg, size)
        except ConfigError:
            continue
        return size
    return cfg.image_size


def test_every_family_module_provides_the_family_interface():
    for family in FAMILY_MODULES:
        cfg = next(c for c in ENCODERS.values() if c.family == family)
        module = encoder_family(cfg)
        assert callable(module.check_image_size) and callable(module.build_encoder)


def test_image_size_rule_belongs_to_the_family_and_is_checked_before_weights(monkeypatch):
    """DINOv2 takes multiples of its 14-pixel patch; the factory says so before it looks for
    weights (the hub is unreachable here, and the error is still the size)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-embedscope-test")
    with pytest.raises(ConfigError, match="multiple of 14") as err:
        create_encoder("dinov2_vits14", weights="hub", image_size=100)
    assert "224" in err.value.hint
    with pytest.raises(ConfigError, match="unknown precision"):
        create_encoder("dinov2_vits14", weights="random", precision="fp16")
    with pytest.raises(UnknownModelError):
        create_encoder("dinov3_huge", weights="random")
