"""SAM2-masked variant: registry and weights, and the real model (random weights) end to end
through the CLI into a real LanceDB."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError, UnknownModelError, WeightsNotFoundError
from embedscope.hashing import sha256_file
from embedscope.models.masking import decode_mask_png, mask_bbox
from embedscope.models.sam2 import (
    SAM2_MODELS,
    Sam2Segmenter,
    get_sam2_config,
    grid_points,
    resolve_sam2_weights,
    sam2_input_size,
)
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import make_photo, run_cli, save_jpeg

FAST = ["--precision", "fp32", "--weights", "random", "--image-size", "56", "--batch-size", "8", "--json", "--no-progress"]
SAM2_FAST = ["--sam2", "--sam2-weights", "random", "--sam2-max-side", "64"]


# -- registry, weights, settings (no model) -------------------------------------------------


def test_registry_names_hub_files_and_configs_that_exist_in_the_sam2_package():
    from importlib.resources import files

    assert list(SAM2_MODELS) == ["sam2.1_hiera_tiny", "sam2.1_hiera_small", "sam2.1_hiera_base_plus",
                                 "sam2.1_hiera_large"]
    tiny = get_sam2_config("sam2.1_hiera_tiny")
    assert (tiny.hf_hub_id, tiny.checkpoint_file) == ("facebook/sam2.1-hiera-tiny", "sam2.1_hiera_tiny.pt")
    assert get_sam2_config("sam2.1_hiera_base_plus").config_file == "configs/sam2.1/sam2.1_hiera_b+.yaml"
    from sam2.build_sam import HF_MODEL_ID_TO_FILENAMES  # the package's own table agrees with ours

    for cfg in SAM2_MODELS.values():
        assert files("sam2").joinpath(cfg.config_file).is_file(), cfg.config_file
        assert HF_MODEL_ID_TO_FILENAMES[cfg.hf_hub_id] == (cfg.config_file, cfg.checkpoint_file)


def test_unknown_model_lists_the_registered_ones():
    with pytest.raises(UnknownModelError) as err:
        resolve_sam2_weights("sam3_huge", "random")
    assert all(name in err.value.one_line() for name in SAM2_MODELS)


def test_weights_random_file_and_offline_hub(tmp_path, monkeypatch):
    assert resolve_sam2_weights("sam2.1_hiera_tiny", "random").label == "random"
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_sam2_weights("sam2.1_hiera_small", str(tmp_path / "nope.pt"))
    assert "--sam2-weights takes" in err.value.one_line() and "sam2.1_hiera_small.pt" in err.value.one_line()
    ckpt = tmp_path / "mine.pt"
    ckpt.write_bytes(b"pretend")
    src = resolve_sam2_weights("sam2.1_hiera_tiny", str(ckpt))
    assert src.kind == "file" and src.label.startswith("file:") and src.path == ckpt.resolve()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_sam2_weights("sam2.1_hiera_tiny", "hub")
    line = err.value.one_line()
    assert "facebook/sam2.1-hiera-tiny/resolve/main/sam2.1_hiera_tiny.pt" in line
    assert "--sam2-weights PATH" in line and "--sam2-weights random" in line and "\n" not in line


def test_missing_sam2_package_is_a_dependency_error_with_the_install_command(monkeypatch):
    import sys

    from embedscope.errors import DependencyError
    from embedscope.models.sam2 import import_sam2, require_sam2

    monkeypatch.setitem(sys.modules, "sam2", None)  # what `import sam2` sees when it is absent
    monkeypatch.setitem(sys.modules, "sam2.build_sam", None)
    for check in (require_sam2, import_sam2):
        with pytest.raises(DependencyError) as err:
            check()
        assert "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0" in err.value.one_line()


def test_input_size_and_prompt_grid():
    assert [sam2_input_size(s) for s in (1024, 1000, 512, 100, 10)] == [1024, 992, 512, 96, 64]
    pts = grid_points(200, 100)
    assert pts.shape == (9, 2) and [100.0, 50.0] in pts.tolist()  # the centre is a prompt
    assert pts.min(axis=0).tolist() == [50.0, 25.0] and pts.max(axis=0).tolist() == [150.0, 75.0]


def test_mask_mode_is_validated():
    assert IngestSettings(sam2_mask_mode="crop").sam2_mask_mode == "crop"
    with pytest.raises(ConfigError, match="mask-mode"):
        IngestSettings(sam2_mask_mode="blur")


def test_offline_hub_fails_fast_in_one_line_before_any_database_work(tmp_path):
    drop = tmp_path / "drop"
    save_jpeg(make_photo(0, (64, 48)), drop / "a.jpg")
    proc = run_cli("ingest", str(drop), "--db", str(tmp_path / "db"), "--weights", "random", "--sam2",
                   env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, check=False)
    assert proc.returncode != 0
    errors = [ln for ln in proc.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "sam2.1_hiera_tiny" in errors[0] and "--sam2-weights" in errors[0]
    assert not (tmp_path / "db").exists()


# -- the real model, random weights ---------------------------------------------------------


@pytest.mark.slow
def test_local_checkpoint_loads_at_a_non_native_input_size(tmp_path):
    """A SAM2 checkpoint file (the official format: {'model': state_dict}) loads through
    --sam2-weights PATH, and the model runs at a reduced input size with it."""
    import torch

    config = get_sam2_config("sam2.1_hiera_tiny")
    rand = Sam2Segmenter(config, resolve_sam2_weights(config.name, "random"), device="cpu", input_size=64)
    ckpt = tmp_path / "sam2.1_hiera_tiny.pt"
    torch.save({"model": rand.predictor.model.state_dict()}, ckpt)
    loaded = Sam2Segmenter(config, resolve_sam2_weights(config.name, str(ckpt)), device="cpu", input_size=64)
    image = np.asarray(make_photo(3, (80, 60)))
    a, b = rand.candidates([image])[0], loaded.candidates([image])[0]
    assert a.masks.shape == (27, 60, 80) and a.masks.dtype == bool and a.scores.shape == (27,)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-6)

    torch.save({"model": {"not": torch.zeros(1)}}, tmp_path / "wrong.pt")
    bad = Sam2Segmenter(config, resolve_sam2_weights(config.name, str(tmp_path / "wrong.pt")), device="cpu",
                        input_size=64)
    with pytest.raises(WeightsNotFoundError, match="cannot load sam2.1_hiera_tiny"):
        bad.candidates([image])


def sam2_drop(root: Path) -> dict[str, Path]:
    """Three photos and one uniform image (no mask can qualify: the fallback path)."""
    drop = root / "drop"
    paths = {f"photo{i}": save_jpeg(make_photo(i, (160, 120)), drop / f"photo{i}.jpg") for i in range(3)}
    drop.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (100, 80), (40, 90, 200)).save(drop / "blank.png")
    paths["blank"] = drop / "blank.png"
    return paths


def rows_by(db: Database, table: str, **where: str) -> list[dict]:
    clause = " AND ".join(f"{k} = '{v}'" for k, v in where.items()) or None
    return db.read(table, where=clause).to_pylist()


@pytest.mark.slow
def test_sam2_end_to_end_added_to_known_images_then_a_noop(tmp_path):
    paths = sam2_drop(tmp_path)
    drop, dbdir = str(tmp_path / "drop"), str(tmp_path / "db")
    emb_table = S.embeddings_table_name("dinov2_vits14")

    first = json.loads(run_cli("ingest", drop, "--db", dbdir, *FAST).stdout)
    assert (first["new"], first["embedded"]) == (4, {"full": 4})
    db = Database(dbdir)
    full_before = {r["sha256"]: r for r in rows_by(db, emb_table, variant="full")}
    images_version = db.version(S.IMAGES)

    # the same drop with --sam2: only the missing variant is computed, for all four images
    proc = run_cli("ingest", drop, "--db", dbdir, *FAST, *SAM2_FAST)
    second = json.loads(proc.stdout)
    assert (second["new"], second["completed"], second["duplicates"]) == (0, 4, 0)
    assert second["embedded"] == {"sam2_masked": 4}
    assert second["stage_seconds"]["sam2"] > 0
    summary_line = next(line for line in proc.stderr.splitlines() if line.startswith("ingest"))
    assert "SAM2" in summary_line and "RANDOM SAM2 weights" in proc.stderr
    db.refresh()
    assert db.version(S.IMAGES) == images_version  # no image row rewritten
    assert db.embedding_counts() == {"dinov2_vits14/full": 4, "dinov2_vits14/sam2_masked": 4}
    full_after = {r["sha256"]: r for r in rows_by(db, emb_table, variant="full")}
    assert full_after == full_before  # the full variant untouched

    shas = {name: db.read(S.SOURCES, where=f"path = '{p}'").column("sha256")[0].as_py() for name, p in paths.items()}
    masks = {r["sha256"]: r for r in db.read(S.MASKS).to_pylist()}
    assert len(masks) == 4 and set(masks) == set(shas.values())
    masked = {r["sha256"]: r for r in rows_by(db, emb_table, variant="sam2_masked")}
    assert all(r["weights"] == "random" and r["model"] == "dinov2_vits14" for r in masked.values())

    blank = masks[shas["blank"]]
    assert blank["fallback"] is True and blank["reason"] == "uniform image: nothing to segment"
    assert blank["mask_png"] is None and blank["area_fraction"] == 1.0 and blank["bbox"] == [0, 0, 100, 80]
    np.testing.assert_allclose(masked[shas["blank"]]["vector"], full_after[shas["blank"]]["vector"], atol=1e-5)

    for name in ("photo0", "photo1", "photo2"):
        row = masks[shas[name]]
        assert row["fallback"] is False and row["model"] == "sam2.1_hiera_tiny" and row["weights"] == "random"
        assert row["mask_mode"] == "mean_fill"
        mask = decode_mask_png(row["mask_png"])
        assert mask.shape == (120, 160)  # the original image size
        assert row["area_fraction"] == pytest.approx(mask.mean(), abs=1e-6)
        assert 0.02 <= row["area_fraction"] <= 0.90
        assert tuple(row["bbox"]) == mask_bbox(mask)
        assert 0.0 <= row["score"] <= 1.0 and "qualifying" in row["reason"]
        # (random DINOv2 weights barely react to their input, so the vectors themselves prove
        # little here: test_stage_feeds_the_encoder_exactly_the_masked_image checks the input)

    # a third run has nothing to do and writes nothing
    versions = {name: db.version(name) for name in (S.IMAGES, S.MASKS, emb_table)}
    third = json.loads(run_cli("ingest", drop, "--db", dbdir, *FAST, *SAM2_FAST).stdout)
    assert (third["new"], third["completed"], third["duplicates"], third["embedded"]) == (0, 0, 4, {})
    db.refresh()
    assert {name: db.version(name) for name in versions} == versions
    assert db.count(S.MASKS) == 4 and db.embedding_counts()["dinov2_vits14/sam2_masked"] == 4


class RecordingEncoder:
    """The real DINOv2 encoder, remembering every batch it was asked to embed."""

    def __init__(self, encoder) -> None:
        self.inner, self.batches = encoder, []
        self.preprocessor, self.name, self.weights = encoder.preprocessor, encoder.name, encoder.weights

    def embed(self, batch, **kw):
        self.batches.append(np.array(batch))
        return self.inner.embed(batch, **kw)


@pytest.mark.slow
def test_stage_feeds_the_encoder_exactly_the_masked_image(tmp_path):
    """Sam2MaskedStage with the real SAM2 (random) and DINOv2 (random): the encoder's input is
    the preprocessed apply_mask(image, stored mask) in both modes, the full image on fallback."""
    import datetime as dt

    from embedscope.ingest.decode_stage import decode_entry
    from embedscope.ingest.scan import FileEntry
    from embedscope.models.factory import create_encoder
    from embedscope.models.masking import apply_mask
    from embedscope.ingest.sam2_stage import Sam2MaskedStage

    settings = IngestSettings(weights="random", image_size=56, sam2=True, sam2_weights="random", sam2_max_side=64,
                              device="cpu")
    dino = create_encoder("dinov2_vits14", weights="random", device="cpu", image_size=56)
    encoder = RecordingEncoder(dino)
    drop = tmp_path / "drop"
    drop.mkdir()
    make_photo(7, (90, 70)).save(drop / "photo.png")  # PNG: decoded at its original size
    Image.new("RGB", (50, 40), (0, 0, 0)).save(drop / "black.png")
    items, sha = [], {}
    for name in ("photo.png", "black.png"):
        path = drop / name
        sha[name] = sha256_file(path)  # the decode checks that the bytes it reads are the ones hashed
        entry = FileEntry(str(path), str(drop), path.stat().st_size, dt.datetime.now(dt.timezone.utc))
        items.append(decode_entry(entry, sha[name], preprocessor=dino.preprocessor, settings=settings, keep_image=True,
                                  draft_to=64, variants=(S.VARIANT_SAM2,)))
    stage = Sam2MaskedStage.build(settings, encoder, resolve_sam2_weights("sam2.1_hiera_tiny", "random"))
    for mode in ("mean_fill", "crop"):
        stage.mask_mode = mode
        out = stage.process(items)
        masks = {r["sha256"]: r for r in out[S.MASKS].to_pylist()}
        assert {r["mask_mode"] for r in masks.values()} == {mode}
        vectors = out[S.embeddings_table_name("dinov2_vits14")]
        assert vectors.column("variant").to_pylist() == ["sam2_masked", "sam2_masked"]
        assert vectors.column("sha256").to_pylist() == [sha["photo.png"], sha["black.png"]]
        fed = encoder.batches[-1]
        assert masks[sha["photo.png"]]["fallback"] is False
        mask = decode_mask_png(masks[sha["photo.png"]]["mask_png"])
        expected = dino.preprocessor(Image.fromarray(apply_mask(np.asarray(items[0].image), mask, mode=mode,
                                                                fill=(124, 116, 104))))
        np.testing.assert_array_equal(fed[0], expected)
        assert masks[sha["black.png"]]["fallback"] is True
        np.testing.assert_array_equal(fed[1], items[1].pixels)
    assert stage.take_timings()["sam2"] > 0 and stage.take_timings() == {"sam2": 0.0}


@pytest.mark.gpu
def test_segmenter_runs_batched_in_bf16_on_cuda():
    config = get_sam2_config("sam2.1_hiera_tiny")
    seg = Sam2Segmenter(config, resolve_sam2_weights(config.name, "random"), device="cuda", input_size=256)
    images = [np.asarray(make_photo(i, (200 + 40 * i, 150))) for i in range(3)]
    out = seg.candidates(images)
    assert seg.precision == "bf16" and seg.device_name.startswith("cuda")
    assert [c.masks.shape for c in out] == [(27, 150, 200), (27, 150, 240), (27, 150, 280)]
