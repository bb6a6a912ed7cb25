"""``--decode gpu``: the batched JPEG decode path, checked against the CPU path by running the
same code on the CPU device (torchvision's libjpeg decoder); the real CUDA path in the GPU
tier. Real DINOv2 (random weights, input 56), real LanceDB on tmp_path."""

from __future__ import annotations

import io
import logging

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError
from embedscope.ingest.decode import decode_bytes, hamming
from embedscope.ingest.jpeg_batch import JpegBatchDecoder, apply_orientation, prepare_jpeg, resolve_decode
from embedscope.ingest.encoders import load_encoders
from embedscope.ingest.pipeline import make_run
from embedscope.ingest.scan import scan_drops
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import exif_with_orientation, make_photo, run_cli, save_jpeg

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_on_a_tensor_matches_pillow_exif_transpose(orientation):
    pixels = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(buf.getvalue()))))
    got = apply_orientation(torch.from_numpy(pixels).permute(2, 0, 1), orientation).permute(1, 2, 0).numpy()
    assert got.shape == expected.shape and (got == expected).all()


def test_prepare_jpeg_decodes_a_small_copy_and_leaves_other_files_to_the_cpu():
    buf = io.BytesIO()
    make_photo(1, (640, 480)).save(buf, "JPEG", quality=90, exif=exif_with_orientation(6))
    prepared = prepare_jpeg(buf.getvalue(), max_pixels=10**9, small_side=128)
    assert (prepared.small.width, prepared.small.height, prepared.small.orientation) == (480, 640, 6)
    assert max(prepared.small.image.size) == 160  # draft 1/4: the longest side still covers 128
    png = io.BytesIO()
    make_photo(1, (64, 48)).save(png, "PNG")
    cmyk = io.BytesIO()
    make_photo(1, (64, 48)).convert("CMYK").save(cmyk, "JPEG")
    assert prepare_jpeg(png.getvalue(), max_pixels=10**9, small_side=128) is None
    assert prepare_jpeg(cmyk.getvalue(), max_pixels=10**9, small_side=128) is None


def test_batch_decoder_output_matches_the_cpu_preprocessor():
    from embedscope.models.preprocess import Preprocessor

    pre = Preprocessor(56, MEAN, STD)
    decoder = JpegBatchDecoder("cpu", 56, MEAN, STD)
    datas = []
    for i, (size, orient) in enumerate([((320, 240), 1), ((240, 320), 6), ((500, 375), 8), ((97, 131), 3)]):
        buf = io.BytesIO()
        make_photo(i, size).save(buf, "JPEG", quality=92, exif=exif_with_orientation(orient))
        datas.append(buf.getvalue())
    out = decoder.decode([prepare_jpeg(d, max_pixels=10**9, small_side=128) for d in datas])
    for data, x in zip(datas, out):
        ref = pre(decode_bytes(data, max_pixels=10**9).image)
        assert x.shape == (3, 56, 56) and x.dtype == torch.float32
        diff = np.abs(x.numpy() - ref)
        assert diff.mean() < 0.03 and np.corrcoef(x.numpy().ravel(), ref.ravel())[0, 1] > 0.995


@pytest.fixture
def jpeg_drop(tmp_path):
    """JPEGs of every kind the batch path must get right, plus files it must leave alone."""
    folder = tmp_path / "drop"
    for i in range(8):
        save_jpeg(make_photo(i, (160, 120)), folder / f"a/img{i}.jpg")
    for orient in (3, 6, 8):
        save_jpeg(make_photo(20 + orient, (160, 120)), folder / f"b/rot{orient}.jpg", exif=exif_with_orientation(orient))
    save_jpeg(make_photo(30, (640, 480)), folder / "b/large.jpg")  # draft 1/4 for the thumbnail
    save_jpeg(make_photo(31, (150, 150)).convert("L"), folder / "b/gray.jpg")
    save_jpeg(make_photo(32, (120, 90)).convert("CMYK"), folder / "b/cmyk.jpg")  # CPU decode
    make_photo(33, (120, 90)).save(folder / "b/pic.png")  # not a JPEG: CPU decode
    good = (folder / "a/img1.jpg").read_bytes()
    (folder / "b/truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "b/copy of img0.jpg").write_bytes((folder / "a/img0.jpg").read_bytes())
    return folder


def _ingest(drop, db_path, encoders, settings, decode_device):
    db = Database(str(db_path), create=True)
    summary = make_run(db, settings, encoders, decode_device=decode_device).run(list(scan_drops(settings.drops)))
    db.refresh()
    return db, summary


def _rows(db):
    images = {r["sha256"]: r for r in db.read(S.IMAGES).to_pylist()}
    emb = db.read_embeddings("dinov2_vits14", "full", ["sha256", "vector"]).to_pylist()
    vectors = {r["sha256"]: np.asarray(r["vector"], np.float32) for r in emb}
    quarantine = {(r["path"].rsplit("/", 1)[-1], r["reason"]) for r in db.read(S.QUARANTINE).to_pylist()}
    return images, vectors, quarantine


@pytest.mark.slow
def test_batched_decode_ingests_the_same_rows_and_vectors_as_the_cpu_path(jpeg_drop, tmp_path):
    settings = IngestSettings(drops=(str(jpeg_drop),), db="", weights="random", image_size=56, batch_size=8,
                              workers=2, progress=False, precision="fp32", label_from_folder=True)
    encoders = load_encoders(settings)
    db_cpu, s_cpu = _ingest(jpeg_drop, tmp_path / "cpu", encoders, settings, None)
    db_bat, s_bat = _ingest(jpeg_drop, tmp_path / "batched", encoders, settings, "cpu")

    counts = lambda s: (s.scanned, s.new, s.duplicates, s.quarantined, s.embedded)  # noqa: E731
    assert counts(s_cpu) == counts(s_bat) == (17, 15, 1, 1, {"full": 15})
    assert s_cpu.stage_seconds["decode_batch"] == 0 < s_bat.stage_seconds["decode_batch"]
    assert (s_cpu.decode, s_bat.decode) == ("cpu", "batched:cpu")

    img_cpu, vec_cpu, q_cpu = _rows(db_cpu)
    img_bat, vec_bat, q_bat = _rows(db_bat)
    assert set(img_cpu) == set(img_bat) == set(vec_cpu) == set(vec_bat)
    assert q_cpu == q_bat and {name for name, _ in q_bat} == {"truncated.jpg"}
    for sha, a in img_cpu.items():
        b = img_bat[sha]
        for key in ("path", "width", "height", "format", "label", "size_bytes"):
            assert a[key] == b[key], (a["path"], key)
        # phash and thumbnail come from the small draft decode: near, not bit-identical
        assert hamming(a["phash"], b["phash"]) <= 8, a["path"]
        assert Image.open(io.BytesIO(a["thumbnail"])).size == Image.open(io.BytesIO(b["thumbnail"])).size
        cos = float(vec_cpu[sha] @ vec_bat[sha])
        assert cos > 0.995, (a["path"], cos)
    rotated = next(r for r in img_bat.values() if r["path"].endswith("rot6.jpg"))
    assert (rotated["width"], rotated["height"]) == (120, 160)


class _RefusingDecoder(JpegBatchDecoder):
    """Stands in for nvJPEG refusing one file that libjpeg (Pillow) accepts; nothing on the
    CPU refuses what Pillow accepts, so the refusal has to be simulated."""

    def _decode_chunk(self, items):
        out = super()._decode_chunk(items)
        return [RuntimeError("nvjpeg: unsupported") if it.small.width == 640 else x for it, x in zip(items, out)]


@pytest.mark.slow
def test_a_file_the_batch_decoder_refuses_is_decoded_on_the_cpu(jpeg_drop, tmp_path, caplog):
    from embedscope.ingest.pipeline import IngestRun

    settings = IngestSettings(drops=(str(jpeg_drop),), db="", weights="random", image_size=56, batch_size=8,
                              workers=2, progress=False, precision="fp32")
    encoders = load_encoders(settings)
    enc = encoders.encoder
    db = Database(str(tmp_path / "db"), create=True)
    run = IngestRun(db, settings, encoders.stages, enc.preprocessor, model=enc.name, weights=enc.weights.label,
                    batch_decoder=_RefusingDecoder("cpu", 56, MEAN, STD))
    with caplog.at_level(logging.INFO, logger="embedscope.ingest.decode_stage"):
        summary = run.run(list(scan_drops(settings.drops)))
    assert (summary.new, summary.quarantined) == (15, 1)
    assert any("refused" in r.message and "large.jpg" in r.message for r in caplog.records)
    db.refresh()
    large = [r for r in db.read(S.IMAGES).to_pylist() if r["path"].endswith("large.jpg")]
    assert len(large) == 1 and (large[0]["width"], large[0]["height"]) == (640, 480)
    assert db.read_embeddings("dinov2_vits14", "full", ["sha256"]).num_rows == 15

    # refused by the batch decoder *and* by Pillow (the worker's draft decode passed): the
    # item leaves the batch and is handed to ``reject`` (quarantine) with Pillow's reason
    from embedscope.ingest.decode import DecodedImage
    from embedscope.ingest.jpeg_batch import Prepared
    from embedscope.ingest.decode_stage import DecodedItem, decode_deferred
    from embedscope.ingest.scan import FileEntry

    data = (jpeg_drop / "b/large.jpg").read_bytes()
    ok = prepare_jpeg((jpeg_drop / "a/img2.jpg").read_bytes(), max_pixels=10**9, small_side=128)
    items = [DecodedItem(entry=FileEntry(f"/x/{name}.jpg", "/x", 1, None), sha256=name, width=640, height=480, format="JPEG", phash=0, thumbnail=b"",
                         pixels=None, deferred=prep)
             for name, prep in (("bad", Prepared(DecodedImage(None, 640, 480, "JPEG"), data[: len(data) // 2])),
                                ("ok", ok))]
    rejected = []
    batch = list(items)
    decode_deferred(batch, run.batch_decoder, preprocessor=run.preprocessor, max_pixels=settings.max_pixels,
                    draft_to=run.draft_to, reject=lambda it, reason: rejected.append((it.sha256, reason)))
    assert [it.sha256 for it in batch] == ["ok"] and batch[0].pixels.shape == (3, 56, 56)
    assert len(rejected) == 1 and rejected[0][0] == "bad" and "truncated" in rejected[0][1]


def test_decode_auto_is_cpu_without_cuda_and_gpu_needs_the_encoder_on_cuda():
    assert resolve_decode("cpu", "cuda") == "cpu"
    if not torch.cuda.is_available():
        assert resolve_decode("auto", "cpu") == "cpu"
        with pytest.raises(ConfigError, match="needs CUDA"):
            resolve_decode("gpu", "cpu")
    else:
        assert resolve_decode("auto", "cuda") == "gpu" and resolve_decode("auto", "cpu") == "cpu"
        with pytest.raises(ConfigError, match="encoder on CUDA"):
            resolve_decode("gpu", "cpu")
    with pytest.raises(ConfigError, match="unknown --decode"):
        IngestSettings(decode="nvjpeg")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error shown where CUDA is absent")
def test_decode_gpu_without_cuda_is_one_line_with_a_hint(tmp_path):
    save_jpeg(make_photo(0, (64, 48)), tmp_path / "drop" / "a.jpg")
    proc = run_cli("ingest", str(tmp_path / "drop"), "--db", str(tmp_path / "db"), "--weights", "random",
                   "--decode", "gpu", check=False)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "--decode gpu needs CUDA" in lines[0] and "--decode cpu" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "db").exists()  # failed before any database work


# -- GPU tier ---------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_batch_decode_matches_the_cpu_device():
    datas = []
    for i, orient in enumerate((1, 6, 3)):
        buf = io.BytesIO()
        make_photo(i, (640, 480)).save(buf, "JPEG", quality=90, exif=exif_with_orientation(orient))
        datas.append(buf.getvalue())
    gray = io.BytesIO()
    make_photo(9, (300, 200)).convert("L").save(gray, "JPEG")
    datas.append(gray.getvalue())
    prepared = [prepare_jpeg(d, max_pixels=10**9, small_side=128) for d in datas]
    on_cpu = JpegBatchDecoder("cpu", 112, MEAN, STD).decode(prepared)
    on_gpu = JpegBatchDecoder("cuda", 112, MEAN, STD).decode(prepared)
    for a, b in zip(on_cpu, on_gpu):
        assert b.device.type == "cuda" and b.shape == a.shape
        assert np.corrcoef(a.numpy().ravel(), b.cpu().numpy().ravel())[0, 1] > 0.995  # IDCTs differ slightly


@pytest.mark.gpu
def test_cuda_ingest_with_gpu_decode(jpeg_drop, tmp_path):
    db = tmp_path / "db"
    proc = run_cli("ingest", str(jpeg_drop), "--db", str(db), "--weights", "random", "--image-size", "56",
                   "--batch-size", "8", "--decode", "gpu", "--json", "--no-progress")
    import json

    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (summary["new"], summary["quarantined"], summary["device"], summary["decode"]) == (15, 1, "cuda", "batched:cuda")
    assert summary["stage_seconds"]["decode_batch"] > 0
