"""The openclip family with random weights on the real architectures (never a hub download):
our image and text vectors equal open_clip's own, the registry equals open_clip's configs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from embedscope.errors import ConfigError, WeightsNotFoundError
from embedscope.models.factory import create_encoder
from embedscope.models.registry import ENCODERS
from tests.conftest import make_photo

OPENCLIP = sorted(name for name, cfg in ENCODERS.items() if cfg.family == "openclip")
LARGE = {"openclip_vitl14"}
TEXTS = ["a chest x-ray with a pacemaker", "a dog on a beach", "", "zzz " * 100]  # empty, and cut at 77 tokens


def by_size(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in LARGE else n for n in names]


def photos():
    """Photo-like images of different sizes and aspects (portrait, landscape, square, tiny, huge)."""
    sizes = [(320, 240), (190, 411), (224, 224), (97, 61), (1200, 1000)]
    return [make_photo(i, size) for i, size in enumerate(sizes)]


def test_there_are_clip_models_of_each_size():
    assert {"openclip_vitb32", "openclip_vitb16", "openclip_vitl14", "openclip_mobileclip2_s0"} <= set(OPENCLIP)


@pytest.mark.parametrize("name", OPENCLIP)
def test_registry_entry_equals_open_clips_own_config(name):
    """hub id, file, input size, mean/std, filter and dim are open_clip's pretrained config."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME

    cfg = ENCODERS[name]
    assert (cfg.arch, cfg.pretrained_tag) in open_clip.list_pretrained()
    pretrained = open_clip.get_pretrained_cfg(cfg.arch, cfg.pretrained_tag)
    model_cfg = open_clip.get_model_config(cfg.arch)
    repo_id, filename = pretrained["hf_hub"].rstrip("/"), pretrained["hf_hub"].endswith("/")
    assert cfg.hf_hub_id == repo_id and filename  # no file named: open_clip loads its default file ...
    assert cfg.weights_file == HF_SAFE_WEIGHTS_NAME  # ... and tries the safetensors one first
    assert (cfg.mean, cfg.std) == (tuple(pretrained["mean"]), tuple(pretrained["std"]))
    assert cfg.interpolation == pretrained["interpolation"] and pretrained["resize_mode"] == "shortest"
    assert cfg.image_size == model_cfg["vision_cfg"]["image_size"]
    assert cfg.dim == model_cfg["embed_dim"]


def test_importing_the_registry_and_factory_imports_neither_torch_nor_open_clip():
    code = ("import sys, embedscope, embedscope.models.registry, embedscope.models.factory; "
            "assert 'torch' not in sys.modules and 'open_clip' not in sys.modules, 'imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_hub_weights_offline_fail_in_one_line_naming_the_file(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-embedscope-test")
    with pytest.raises(WeightsNotFoundError) as err:
        create_encoder("openclip_vitb32", weights="hub")
    hint = err.value.hint
    assert "--weights PATH" in hint and "laion/CLIP-ViT-B-32-laion2B-s34B-b79K" in hint
    assert "open_clip_model.safetensors" in hint
    assert "\n" not in str(err.value) and "\n" not in hint


def test_the_checkpoint_input_size_only(monkeypatch):
    """Fixed position embeddings: one input size, said before any weights are looked for."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-embedscope-test")
    with pytest.raises(ConfigError, match="takes 224x224 images only") as err:
        create_encoder("openclip_vitb32", weights="hub", image_size=336)
    assert "--image-size 224" in err.value.hint
    with pytest.raises(ConfigError, match="takes 256x256"):
        create_encoder("openclip_mobileclip2_s0", weights="random", image_size=224)
    assert create_encoder("openclip_mobileclip2_s0", weights="random", image_size=256).preprocessor.size == 256


def test_patch_means_are_refused():
    enc = create_encoder("openclip_vitb32", weights="random", device="cpu", precision="fp32")
    with pytest.raises(ConfigError, match="no patch tokens"):
        enc.embed(np.zeros((1, 3, 224, 224), np.float32), patch_mean=True)


def test_preprocessing_is_open_clips_preprocess_val():
    """Pixel for pixel, for each registered preprocessing (filter, size, mean/std)."""
    import open_clip

    for name in OPENCLIP:
        cfg = ENCODERS[name]
        enc = create_encoder(name, weights="random")  # builds nothing yet
        val = open_clip.image_transform(cfg.image_size, is_train=False, mean=cfg.mean, std=cfg.std,
                                        interpolation=cfg.interpolation, resize_mode="shortest")
        for image in photos():
            np.testing.assert_allclose(enc.preprocessor(image), val(image).numpy(), atol=1e-5, err_msg=name)


def reference_model(enc):
    """open_clip's own model and ``preprocess_val`` at the entry's preprocessing, with the
    weights our encoder was built from (before it fused MobileCLIP's blocks)."""
    import open_clip

    from embedscope.models.openclip import build_openclip_model

    cfg = enc.config
    model, _, preprocess_val = open_clip.create_model_and_transforms(
        cfg.arch, pretrained=None, image_mean=cfg.mean, image_std=cfg.std,
        image_interpolation=cfg.interpolation, image_resize_mode="shortest")
    model.load_state_dict(build_openclip_model(cfg, enc.weights).state_dict())
    return model.eval(), preprocess_val, open_clip.get_tokenizer(cfg.arch)


@pytest.mark.slow
@pytest.mark.parametrize("name", by_size(OPENCLIP))
def test_vectors_equal_a_direct_open_clip_forward(name):
    import torch
    import torch.nn.functional as F

    enc = create_encoder(name, weights="random", device="cpu", precision="fp32")
    model, preprocess_val, tokenizer = reference_model(enc)
    images = photos()
    ours = enc.embed_images([enc.preprocessor(im) for im in images])
    ours_text = enc.text.embed_texts(TEXTS)
    with torch.inference_mode():
        expected = F.normalize(model.encode_image(torch.stack([preprocess_val(im) for im in images])), dim=-1)
        expected_text = F.normalize(model.encode_text(tokenizer(TEXTS)), dim=-1)
    assert ours.shape == (len(images), enc.dim) and ours.dtype == np.float32
    assert ours_text.shape == (len(TEXTS), enc.dim) and ours_text.dtype == np.float32
    assert np.min(np.sum(ours * expected.numpy(), axis=1)) >= 0.9999
    assert np.min(np.sum(ours_text * expected_text.numpy(), axis=1)) >= 0.9999
    np.testing.assert_allclose(np.linalg.norm(ours_text, axis=1), 1.0, atol=1e-5)
    # the random network sees its input: different images / texts, different vectors
    # (MobileCLIP's FastViT needed its LayerScale at 1.0 for that: random_init_fix)
    distances = 1.0 - ours @ ours.T
    assert distances[np.triu_indices(len(images), 1)].min() > 1e-5
    text_distances = 1.0 - ours_text @ ours_text.T
    assert text_distances[np.triu_indices(len(TEXTS), 1)].min() > 1e-4


@pytest.mark.slow
def test_random_init_is_seeded_and_not_degenerate():
    enc = create_encoder("openclip_mobileclip2_s0", weights="random", device="cpu", precision="fp32")
    again = create_encoder("openclip_mobileclip2_s0", weights="random", device="cpu", precision="fp32")
    x = [enc.preprocessor(im) for im in photos()[:3]]
    np.testing.assert_array_equal(enc.embed_images(x), again.embed_images(x))
    # timm's LayerScale init (1e-5) would give cosine distances of ~1e-6 between any images
    v = enc.embed_images(x)
    assert (1.0 - v @ v.T)[np.triu_indices(3, 1)].min() > 1e-5


@pytest.mark.slow
def test_local_weights_file_loads_and_is_recorded_by_hash(tmp_path):
    import torch
    from safetensors.torch import save_file

    from embedscope.hashing import sha256_file

    from embedscope.models.openclip import build_openclip_model

    random = create_encoder("openclip_mobileclip2_s0", weights="random", device="cpu", precision="fp32")
    sd = {k: v.contiguous() for k, v in build_openclip_model(random.config, random.weights).state_dict().items()}
    key = next(k for k in sd if k.endswith("text_projection"))  # a text-tower weight
    with torch.no_grad():
        sd[key] = sd[key] + 0.01  # distinguishable from the seeded weights
    path = tmp_path / "open_clip_model.safetensors"
    save_file(sd, str(path))
    enc = create_encoder("openclip_mobileclip2_s0", weights=str(path), device="cpu", precision="fp32")
    assert enc.weights.kind == "file" and enc.weights.label == f"file:{sha256_file(path)}"
    assert torch.equal(enc.model.state_dict()[key], sd[key])
    x = [enc.preprocessor(make_photo(1))]
    np.testing.assert_allclose(enc.embed_images(x), random.embed_images(x), atol=1e-6)  # image tower as saved
    assert not np.allclose(enc.text.embed_texts(["a dog"]), random.text.embed_texts(["a dog"]))
