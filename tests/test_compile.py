"""``--compile``: a failed compilation falls back to eager with one logged line; short batches
reuse the compiled graph (padded) instead of compiling again. Real DINOv2 (random weights,
input 28); torch.compile itself is replaced (a failing one, or dynamo with its ``eager``
backend) because inductor's C++ build takes minutes on a small CPU — the real failure
(``CXX=/nonexistent/g++``) was checked by hand and gives the same fallback (see
docs/benchmarks.md)."""

from __future__ import annotations

import functools
import logging

import numpy as np
import pytest
import torch

from embedscope.models.dinov2 import DinoV2Encoder
from embedscope.models.factory import create_encoder
from tests.conftest import make_photo


def _encoder(**kw) -> DinoV2Encoder:
    return create_encoder("dinov2_vits14", weights="random", device="cpu", image_size=28, precision="fp32", **kw)


def _batch(n: int, enc: DinoV2Encoder) -> np.ndarray:
    return np.stack([enc.preprocessor(make_photo(i, (64, 48))) for i in range(n)])


def test_a_failing_compile_falls_back_to_eager_with_one_logged_line(monkeypatch, caplog):
    calls = []

    def broken_compile(fn, **kwargs):
        calls.append(kwargs)

        def compiled(*args, **kw):
            raise RuntimeError("InductorError: InvalidCxxCompiler: No working C++ compiler found\nmore detail")

        return compiled

    monkeypatch.setattr(torch, "compile", broken_compile)
    enc, ref = _encoder(compile=True), _encoder()
    x = _batch(3, enc)
    with caplog.at_level(logging.WARNING, logger="embedscope.models.dinov2"):
        first = enc.embed(x).cls
        second = enc.embed(x[:2]).cls
    assert calls == [{"dynamic": False}]
    assert enc.compile_error == "RuntimeError: InductorError: InvalidCxxCompiler: No working C++ compiler found"
    lines = [r.getMessage() for r in caplog.records if "torch.compile failed" in r.getMessage()]
    assert len(lines) == 1 and "running the encoder eagerly" in lines[0]
    expected = ref.embed(x).cls
    assert np.allclose(first, expected, atol=1e-5) and np.allclose(second, expected[:2], atol=1e-5)


def test_torch_compile_raising_at_wrap_time_also_falls_back(monkeypatch):
    def refuses(fn, **kwargs):
        raise RuntimeError("Windows not yet supported for torch.compile")

    monkeypatch.setattr(torch, "compile", refuses)
    enc = _encoder(compile=True)
    out = enc.embed(_batch(2, enc)).cls
    assert out.shape == (2, 384) and enc.compile_error.startswith("RuntimeError: Windows")


@pytest.mark.slow
def test_short_batches_reuse_the_compiled_graph(monkeypatch):
    """Dynamo for real (its ``eager`` backend: no C++ build): the last, short batch is padded to
    a compiled size rather than compiled again, and gives the eager result."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    enc, ref = _encoder(compile=True), _encoder()
    x = _batch(4, enc)
    full = enc.embed(x).cls
    short = enc.embed(x[:3]).cls
    assert enc._compiled_batches == {4} and enc.compile_error is None and enc.compile_seconds > 0
    expected = ref.embed(x).cls
    assert np.allclose(full, expected, atol=1e-4) and np.allclose(short, expected[:3], atol=1e-4)
