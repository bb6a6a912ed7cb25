from __future__ import annotations

import os

import pytest

from embedscope.errors import ConfigError
from embedscope.ingest.scan import scan_drops


def test_scan_lists_images_skips_hidden_and_others_and_flags_symlinks_out(tmp_path):
    drop = tmp_path / "drop"
    (drop / "sub").mkdir(parents=True)
    (drop / "a.JPG").write_bytes(b"x")
    (drop / "sub" / "b c ü.png").write_bytes(b"x")
    (drop / "notes.txt").write_bytes(b"x")
    (drop / ".hidden.jpg").write_bytes(b"x")
    (drop / ".git").mkdir()
    (drop / ".git" / "c.jpg").write_bytes(b"x")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(b"x")
    os.symlink(outside / "secret.jpg", drop / "link-out.jpg")
    os.symlink(outside, drop / "dir-out")
    os.symlink(drop / "a.JPG", drop / "link-in.jpg")
    entries = list(scan_drops([drop]))
    names = sorted(os.path.relpath(e.path, drop) for e in entries if not e.problem)
    assert names == ["a.JPG", "link-in.jpg", "sub/b c ü.png"]
    # the link out is listed (so its path is recorded), with the reason it is never read
    problems = {os.path.relpath(e.path, drop): e.problem for e in entries if e.problem}
    assert list(problems) == ["link-out.jpg"] and problems["link-out.jpg"].startswith("symlink points outside")
    entry = next(e for e in scan_drops([drop]) if e.path.endswith("ü.png"))
    assert entry.drop == str(drop) and entry.folder_label == "sub" and entry.size_bytes == 1


def test_missing_drop_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        list(scan_drops([tmp_path / "nope"]))
