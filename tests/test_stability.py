"""The daemon's settle rule, alone: when is a file in a drop finished being written?"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pyarrow as pa
import pytest

from embedscope.ingest.scan import scan_drops
from embedscope.ingest.stability import SettleTracker, entry_key, looks_incomplete, mtime_us
from tests.conftest import make_photo, save_jpeg


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def scan(drop: Path):
    return list(scan_drops([drop]))


def test_ready_only_after_two_unchanged_polls_and_the_settle_time(tmp_path):
    drop = tmp_path / "drop"
    save_jpeg(make_photo(1, (64, 48)), drop / "a.jpg")
    clock = Clock()
    tracker = SettleTracker(settle=2.0, clock=clock)
    assert tracker.observe(scan(drop)) == []  # first sight
    clock.t += 1.0
    assert tracker.observe(scan(drop)) == []  # unchanged, but not for 2 s yet
    assert tracker.waiting == 1
    clock.t += 1.5
    ready = tracker.observe(scan(drop))
    assert [Path(e.path).name for e in ready] == ["a.jpg"]
    assert tracker.waiting == 0  # handed over, forgotten


def test_settle_zero_still_needs_two_polls(tmp_path):
    drop = tmp_path / "drop"
    save_jpeg(make_photo(1, (64, 48)), drop / "a.jpg")
    tracker = SettleTracker(settle=0.0, clock=Clock())
    assert tracker.observe(scan(drop)) == []
    assert len(tracker.observe(scan(drop))) == 1


def test_a_growing_file_restarts_the_clock(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    path = drop / "b.bmp"
    data = (make_photo(2, (64, 48)).tobytes())
    clock = Clock()
    tracker = SettleTracker(settle=1.0, clock=clock)
    path.write_bytes(data[:100])
    assert tracker.observe(scan(drop)) == []
    for end in (200, 300, 400):
        clock.t += 5.0  # long past the settle time, but the file changed in between
        with open(path, "ab") as fh:
            fh.write(data[end - 100:end])
        assert tracker.observe(scan(drop)) == []
    clock.t += 5.0
    assert len(tracker.observe(scan(drop))) == 1


def test_vanished_files_are_forgotten(tmp_path):
    drop = tmp_path / "drop"
    save_jpeg(make_photo(1, (64, 48)), drop / "a.jpg")
    tracker = SettleTracker(settle=0.0, clock=Clock())
    tracker.observe(scan(drop))
    (drop / "a.jpg").unlink()
    assert tracker.observe(scan(drop)) == [] and tracker.waiting == 0


def test_unfinished_jpeg_and_png_are_held_until_the_grace_time(tmp_path):
    drop = tmp_path / "drop"
    full = save_jpeg(make_photo(3, (96, 72)), tmp_path / "full.jpg").read_bytes()
    drop.mkdir()
    (drop / "half.jpg").write_bytes(full[: len(full) // 2])
    png = tmp_path / "full.png"
    make_photo(4, (96, 72)).save(png)
    (drop / "half.png").write_bytes(png.read_bytes()[:-30])
    (drop / "done.jpg").write_bytes(full)
    (drop / "text.png").write_text("not a png at all")  # not a PNG being written: the decoder judges it
    assert looks_incomplete(str(drop / "half.jpg")) and looks_incomplete(str(drop / "half.png"))
    assert not looks_incomplete(str(drop / "done.jpg")) and not looks_incomplete(str(drop / "text.png"))
    assert not looks_incomplete(str(png))

    clock, wall = Clock(), Clock()
    wall.t = os.stat(drop / "half.jpg").st_mtime + 10  # mtimes are 10 s old
    tracker = SettleTracker(settle=0.0, incomplete_grace=60.0, clock=clock, wall_clock=wall)
    tracker.observe(scan(drop))
    ready = {Path(e.path).name for e in tracker.observe(scan(drop))}
    assert ready == {"done.jpg", "text.png"}
    assert tracker.held_incomplete == 2
    wall.t += 100  # nobody finished them: they really are truncated, let the pipeline quarantine them
    ready = {Path(e.path).name for e in tracker.observe(scan(drop))}
    assert ready == {"half.jpg", "half.png"}


def test_entry_key_matches_what_arrow_stores(tmp_path):
    """The daemon compares scanned files with `sources` rows by (path, size, mtime µs)."""
    drop = tmp_path / "drop"
    save_jpeg(make_photo(1, (64, 48)), drop / "a.jpg")
    os.utime(drop / "a.jpg", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    (entry,) = scan(drop)
    stored = pa.array([entry.mtime], pa.timestamp("us", tz="UTC")).cast(pa.int64()).to_pylist()[0]
    assert entry_key(entry) == (entry.path, entry.size_bytes, stored)
    assert mtime_us(dt.datetime(1970, 1, 1, 0, 0, 1, 5, tzinfo=dt.timezone.utc)) == 1_000_005


@pytest.mark.parametrize("fmt,kwargs", [("BMP", {}), ("GIF", {}), ("TIFF", {}), ("TIFF", {"compression": "tiff_lzw"}),
                                        ("WEBP", {"quality": 80}), ("JPEG", {}), ("PNG", {})])
def test_every_format_is_incomplete_until_its_last_byte(tmp_path, fmt, kwargs):
    """A half-written BMP, GIF, TIFF or WebP is held back like a JPEG or PNG (it used to be
    handed over and quarantined); the whole file is not."""
    import io

    buf = io.BytesIO()
    make_photo(3, (64, 48)).save(buf, fmt, **kwargs)
    data = buf.getvalue()
    path = tmp_path / f"x.{fmt.lower()}"
    path.write_bytes(data)
    assert not looks_incomplete(str(path)), "the complete file must be handed over"
    for cut in (len(data) // 3, len(data) // 2, len(data) - 1):
        path.write_bytes(data[:cut])
        assert looks_incomplete(str(path)), f"{fmt} cut at {cut} of {len(data)} bytes"


def test_a_fifo_or_folder_is_never_opened_for_a_completeness_check(tmp_path):
    fifo = tmp_path / "f.jpg"
    os.mkfifo(fifo)
    assert looks_incomplete(str(fifo)) is False  # returns at once: O_NONBLOCK, not a regular file
    assert looks_incomplete(str(tmp_path)) is False
