"""The fast ingest path: background writer, stop/failure consistency, precision and batch
choice, CUDA specifics (GPU tier). Real DINOv2 (random weights, tiny inputs), real LanceDB."""

from __future__ import annotations

import threading
import time

import numpy as np
import pyarrow as pa
import pytest

from embedscope.config import IngestSettings
from embedscope.ingest.encoders import load_encoders
from embedscope.ingest.pipeline import make_run
from embedscope.ingest.scan import scan_drops
from embedscope.ingest.writer import BatchWriter, WriteJob
from embedscope.store import schema as S
from embedscope.store.db import Database
from tests.conftest import make_photo, save_jpeg


def _job(i: int) -> WriteJob:
    return WriteJob(sources=[{"i": i}])


def test_writer_commits_in_order_and_coalesces():
    seen: list[list[int]] = []
    writer = BatchWriter(lambda j: seen.append([r["i"] for r in j.sources]), min_images=10**6, min_rows=5,
                         max_delay=60)
    for i in range(12):
        writer.submit(_job(i))
    writer.close()
    assert [i for part in seen for i in part] == list(range(12))  # every row, in order
    assert len(seen) < 12 and all(len(p) >= 5 for p in seen[:-1])  # fewer, larger commits


def test_writer_commits_after_max_delay_without_close():
    seen: list[int] = []
    writer = BatchWriter(lambda j: seen.extend(r["i"] for r in j.sources), min_images=10**6, min_rows=10**6,
                         max_delay=0.2)
    writer.submit(_job(1))
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.05)
    assert seen == [1]
    writer.close()


def test_writer_error_surfaces_in_the_submitting_thread():
    def commit(job: WriteJob) -> None:
        raise OSError("disk full")

    writer = BatchWriter(commit, min_images=1, min_rows=1, max_delay=0, max_queued=1)
    with pytest.raises(OSError, match="disk full"):
        for i in range(100):  # the writer dies on the first; a later submit (or close) reports it
            writer.submit(_job(i))
            time.sleep(0.01)
        writer.close()
    assert not any(t.name == "ingest-writer" and t.is_alive() for t in threading.enumerate())


@pytest.fixture
def drop(tmp_path):
    folder = tmp_path / "drop"
    for i in range(40):
        save_jpeg(make_photo(i, (96, 72)), folder / f"img{i:02d}.jpg")
    save_jpeg(make_photo(0, (96, 72)), folder / "zz copy of img00.jpg")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return folder


def _settings(drop, db, **kw) -> IngestSettings:
    return IngestSettings(drops=(str(drop),), db=str(db), weights="random", image_size=28, batch_size=4,
                          workers=2, progress=False, precision="fp32", write_images=8, **kw)


def _assert_consistent(db: Database) -> None:
    """The crash-safety invariant: every path's sha is settled, every image is embedded."""
    db.refresh()
    images = set(db.read(S.IMAGES, ["sha256"]).column("sha256").to_pylist())
    quarantined = set(db.read(S.QUARANTINE, ["sha256"]).column("sha256").to_pylist())
    embedded = set(db.read_embeddings("dinov2_vits14", "full", ["sha256"]).column("sha256").to_pylist())
    sources = set(db.read(S.SOURCES, ["sha256"]).column("sha256").to_pylist())
    assert images <= embedded
    assert sources <= images | quarantined | {""}


@pytest.mark.slow
def test_stop_midway_leaves_a_consistent_db_and_a_rerun_completes_it(drop, tmp_path):
    settings = _settings(drop, tmp_path / "db")
    encoders = load_encoders(settings)
    db = Database(settings.db, create=True)
    entries = list(scan_drops(settings.drops))
    polls = iter(range(10**6))
    first = make_run(db, settings, encoders).run(entries, should_stop=lambda: next(polls) >= 17)
    assert 0 < first.scanned < len(entries)
    _assert_consistent(db)
    assert 0 < db.count(S.IMAGES) < 40

    second = make_run(db, settings, encoders).run(entries)
    _assert_consistent(db)
    assert db.count(S.IMAGES) == 40 and second.new == 40 - first.new
    assert db.count(S.SOURCES) == len(entries)
    # batch size 4, write_images 8: several batches went through one writer, in order
    assert second.embedded == {"full": 40 - first.new} and second.stage_seconds["write"] > 0


class _BrokenStage:
    """A stage whose rows the database rejects: the failure happens in the writer thread."""

    variant = S.VARIANT_FULL
    needs_image = False

    def __init__(self, inner):
        self.inner = inner
        self.calls = 0

    def process(self, items):
        self.calls += 1
        out = self.inner.process(items)
        if self.calls < 3:
            return out
        (name, rows), = out.items()
        return {name: rows.drop_columns(["vector"]).append_column("vector", pa.array(["x"] * rows.num_rows))}


@pytest.mark.slow
def test_a_writer_failure_is_raised_and_leaves_a_consistent_db(drop, tmp_path):
    settings = _settings(drop, tmp_path / "db")
    encoders = load_encoders(settings)
    db = Database(settings.db, create=True)
    from embedscope.ingest.pipeline import IngestRun

    enc = encoders.encoder
    run = IngestRun(db, settings, [_BrokenStage(encoders.stages[0])], enc.preprocessor, model=enc.name,
                    weights=enc.weights.label)
    with pytest.raises(Exception):
        run.run(list(scan_drops(settings.drops)))
    _assert_consistent(db)
    assert db.count(S.IMAGES) < 40  # the bad batch and everything after it were not recorded


@pytest.mark.slow
def test_bf16_is_close_to_fp32_and_auto_precision_is_measured():
    import torch

    from embedscope.models.device import cpu_has_bf16
    from embedscope.models.factory import create_encoder

    def encoder(**kw):
        return create_encoder("dinov2_vits14", weights="random", device="cpu", image_size=56, **kw)

    fp32, bf16 = encoder(precision="fp32"), encoder(precision="bf16")
    x = np.stack([fp32.preprocessor(make_photo(i)) for i in range(4)])
    a, b = fp32.embed(x).cls, bf16.embed(x).cls
    assert bf16.model.patch_embed.proj.weight.dtype == torch.bfloat16  # weights really in bf16
    assert b.dtype == np.float32 and np.allclose(np.linalg.norm(b, axis=1), 1, atol=1e-3)
    assert (a * b).sum(axis=1).min() > 0.99

    auto = encoder()
    auto.model
    if cpu_has_bf16():
        assert set(auto.calibration) == {"fp32_img_s", "bf16_img_s"}
        faster = auto.calibration["bf16_img_s"] >= 1.1 * auto.calibration["fp32_img_s"]
        assert auto.precision == ("bf16" if faster else "fp32")
    else:
        assert (auto.precision, auto.calibration) == ("fp32", {})
    assert auto.choose_batch_size(0) == 32 and auto.choose_batch_size(5) == 5


# -- GPU tier (skipped without CUDA) ----------------------------------------------------------


@pytest.fixture
def cuda_encoder():
    from embedscope.models.factory import create_encoder

    return create_encoder("dinov2_vits14", weights="random", device="cuda", image_size=112)


@pytest.mark.gpu
def test_cuda_bf16_pinned_batches_match_cpu_fp32(cuda_encoder):
    from embedscope.models.factory import create_encoder

    cpu = create_encoder("dinov2_vits14", weights="random", device="cpu", image_size=112, precision="fp32")
    arrays = [cpu.preprocessor(make_photo(i)) for i in range(6)]
    batch = cuda_encoder.stack(arrays)
    assert cuda_encoder.precision == "bf16" and batch.is_pinned()
    a, b = cpu.embed(np.stack(arrays)).cls, cuda_encoder.embed(batch).cls
    assert (a * b).sum(axis=1).min() > 0.99


@pytest.mark.gpu
def test_cuda_batch_size_from_free_memory(cuda_encoder):
    size = cuda_encoder.choose_batch_size(0)
    assert 8 <= size <= 1024 and size & (size - 1) == 0
    assert cuda_encoder.choose_batch_size(7) == 7


@pytest.mark.gpu
def test_cuda_ingest_end_to_end(drop, tmp_path):
    settings = IngestSettings(
        drops=(str(drop),), db=str(tmp_path / "db"), weights="random", image_size=56, device="cuda",
        progress=False)
    encoders = load_encoders(settings)
    db = Database(settings.db, create=True)
    summary = make_run(db, settings, encoders).run(list(scan_drops(settings.drops)))
    assert (summary.new, summary.device, summary.precision) == (40, "cuda", "bf16")
    _assert_consistent(db)
