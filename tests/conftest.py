"""Shared fixtures: generated images, tmp_path databases, the real datasets when present."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent")
    return SHARED_DATASETS


def make_photo(seed: int, size: tuple[int, int] = (320, 240)) -> Image.Image:
    """A smooth, photo-like RGB image (gradients + blobs) that JPEG compresses realistically."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        a, b, ph = rng.uniform(0.005, 0.05, 3)
        img[..., c] = 127 + 90 * np.sin(a * xx + b * yy + ph * 6)
    for _ in range(4):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, min(w, h) / 3)
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        img[mask] = rng.uniform(0, 255, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def save_jpeg(image: Image.Image, path: Path, quality: int = 90, exif: bytes | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": quality}
    if exif is not None:
        kwargs["exif"] = exif
    image.save(path, "JPEG", **kwargs)
    return path


def exif_with_orientation(orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def run_cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real entry point (``python -m embedscope``) in a subprocess."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "embedscope", *args], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"embedscope {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def photo():
    return make_photo


@pytest.fixture
def mixed_drop(tmp_path: Path) -> dict:
    """A drop with every awkward case issue #2 names, and the counts it must produce.

    Returns a dict with the drop path and the expected counts.
    """
    drop = tmp_path / "drop"
    a, b = drop / "cats", drop / "dogs"
    for i in range(6):
        save_jpeg(make_photo(i), a / f"img{i}.jpg")
    # exact duplicates: two copies of img0 (one in another folder, one with spaces+unicode name)
    (b / "copy of img0.jpg").parent.mkdir(parents=True, exist_ok=True)
    (b / "copy of img0.jpg").write_bytes((a / "img0.jpg").read_bytes())
    (b / "ünïcødé façade 猫.jpg").write_bytes((a / "img0.jpg").read_bytes())
    # a distinct image with a spaces + unicode name
    save_jpeg(make_photo(100), b / "naïve photo 2.jpg")
    # EXIF-rotated (orientation 6 = rotate 90° CW on display): stored 320x240 → shown 240x320
    save_jpeg(make_photo(101), b / "rotated.jpg", exif=exif_with_orientation(6))
    # grayscale PNG and 16-bit PNG
    Image.fromarray((np.arange(200 * 150) % 251).reshape(150, 200).astype(np.uint8)).save(b / "gray.png")
    deep = (np.linspace(0, 60000, 180 * 120).reshape(120, 180)).astype(np.uint16)
    Image.fromarray(deep).save(b / "deep16.png")
    # RGBA PNG, WebP, BMP, TIFF, GIF
    Image.new("RGBA", (64, 64), (255, 0, 0, 128)).save(b / "alpha.png")
    make_photo(102, (128, 96)).save(b / "pic.webp")
    make_photo(103, (128, 96)).save(b / "pic.bmp")
    make_photo(104, (128, 96)).save(b / "pic.tiff")
    make_photo(105, (128, 96)).convert("P").save(b / "pic.gif")
    # bad files
    good = (a / "img1.jpg").read_bytes()
    (b / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (b / "empty.jpg").write_bytes(b"")
    (b / "notes.png").write_text("this is not a png")
    # ignored: not an image extension, hidden
    (b / "readme.txt").write_text("ignored")
    (b / ".hidden.jpg").write_bytes(good)
    return {
        "drop": drop,
        "files": 20,  # image-named, non-hidden files
        "images": 15,  # distinct decodable contents: 6 + naive + rotated + gray + deep + alpha + 4 formats
        "duplicates": 2,
        "quarantined": 3,
    }


def encoded_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def vectors_parquet(path: Path, ids, X, labels=None) -> Path:
    """A Parquet file of (id, vector[, label]) rows, as `embedscope ingest-vectors` reads it."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    X = np.asarray(X, np.float32)
    cols = {"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), X.shape[1])}
    if labels is not None:
        cols["label"] = labels
    pq.write_table(pa.table(cols), path)
    return path


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real local S3-compatible server (moto, server mode) with one bucket, for the session."""
    pytest.importorskip("moto")
    pytest.importorskip("boto3")
    from tests.s3server import S3Server

    server = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The session's S3 server, with this test process's environment pointed at it."""
    from tests.s3server import _AWS_VARS

    for var in _AWS_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server
