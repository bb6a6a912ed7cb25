"""A generated hostile drop: every input a hostile or careless user can put in a drop, with the
exact outcome ingest must give each (see tests/test_hostile_ingest.py)."""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tests.conftest import make_photo

GIB = 2**30
SPARSE_SIZE = 4 * GIB + 2048


@dataclass(frozen=True)
class Expect:
    outcome: str  # "ingested" | "duplicate" | "quarantined"
    reason: str = ""  # for quarantined: a substring of the stored reason


def _jpeg(seed: int, size: tuple[int, int] = (96, 72), **kw) -> bytes:
    buf = io.BytesIO()
    make_photo(seed, size).save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def _png(image: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG", **kw)
    return buf.getvalue()


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` and that holds no pixel data at all."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _gif_frames(n: int) -> bytes:
    frames = [Image.fromarray(np.full((24, 32, 3), (i * 37 % 256, i % 256, 255 - i % 256), np.uint8))
              for i in range(n)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=20, loop=0)
    return buf.getvalue()


NAME_255 = "n" * 251 + ".jpg"
BAD_UTF8 = b"x\xff.jpg"


def build(root: Path, *, sparse: bool = True) -> tuple[Path, dict[str, Expect]]:
    """The drop ``root/drop`` (and ``root/outside``); returns it and ``{name: expectation}``
    where ``name`` is the path relative to the drop as ``os`` names it (surrogate-escaped)."""
    drop, outside = root / "drop", root / "outside"
    for d in (drop, outside):
        d.mkdir(parents=True)
    expect: dict[str, Expect] = {}

    def put(name: str | bytes, data: bytes, outcome: Expect) -> None:
        path = os.path.join(os.fsencode(drop), os.fsencode(name))
        with open(path, "wb") as fh:
            fh.write(data)
        expect[os.fsdecode(name)] = outcome

    ok, dup = Expect("ingested"), Expect("duplicate")
    good = [_jpeg(i) for i in range(3)]
    for i, data in enumerate(good):
        put(f"good{i}.jpg", data, ok)
    put(BAD_UTF8, _jpeg(10), ok)  # a name that is not UTF-8
    put("new\nline.jpg", _jpeg(11), ok)
    put("-leading-dash.jpg", _jpeg(12), ok)
    put(NAME_255, _jpeg(13), ok)
    put("z copy of good0.jpg", good[0], dup)  # after good0.jpg in scan order: the first path wins
    put("empty.jpg", b"", Expect("quarantined", "empty file (0 bytes)"))
    put("html.jpg", b"<!doctype html><html><body>not an image</body></html>\n",
        Expect("quarantined", "not a recognised image format"))
    whole_jpeg, whole_png = _jpeg(20, (160, 120)), _png(make_photo(21, (160, 120)))
    for cut in (0.02, 0.5, 0.9):
        truncated = Expect("quarantined", "corrupt or truncated image")
        put(f"cut{int(cut * 100)}.jpg", whole_jpeg[: int(len(whole_jpeg) * cut)], truncated)
        put(f"cut{int(cut * 100)}.png", whole_png[: int(len(whole_png) * cut)], truncated)
    put("bomb-100k.png", _png_header_only(100_000, 100_000), Expect("quarantined", "decompression bomb"))
    put("frames400.gif", _gif_frames(400), ok)
    cmyk = io.BytesIO()
    make_photo(30, (80, 60)).convert("CMYK").save(cmyk, "JPEG")
    put("cmyk.jpg", cmyk.getvalue(), ok)
    deep = Image.new("I;16", (64, 48))
    deep.frombytes(np.linspace(0, 65535, 64 * 48).astype("<u2").tobytes())
    put("deep16.png", _png(deep), ok)
    pal = make_photo(31, (64, 48)).convert("P", palette=Image.ADAPTIVE, colors=16)
    put("palette-alpha.png", _png(pal, transparency=0), ok)
    put("one-pixel.png", _png(Image.new("RGB", (1, 1), (200, 10, 10))), ok)
    put("wide-20000x10.png", _png(Image.fromarray(np.tile(np.arange(20000, dtype=np.uint8) % 251, (10, 1)))), ok)
    if sparse:  # a real JPEG head, then 4 GiB of (sparse) zeros: refused before one byte is read
        put("sparse-4g.jpg", _jpeg(40, (400, 533)), Expect("quarantined", "file is 4.0 GiB, over the 256 MiB limit"))
        os.truncate(drop / "sparse-4g.jpg", SPARSE_SIZE)
    # links: inside (followed), outside, loop, dangling; a FIFO
    os.symlink("good1.jpg", drop / "link-in.jpg")
    expect["link-in.jpg"] = dup
    (outside / "secret.jpg").write_bytes(_jpeg(50))
    os.symlink(outside / "secret.jpg", drop / "link-out.jpg")
    expect["link-out.jpg"] = Expect("quarantined", "symlink points outside the drop")
    os.symlink("loop-b.jpg", drop / "loop-a.jpg")
    os.symlink("loop-a.jpg", drop / "loop-b.jpg")
    expect["loop-a.jpg"] = expect["loop-b.jpg"] = Expect("quarantined", "symlink loop")
    os.symlink("nowhere.jpg", drop / "dangling.jpg")
    expect["dangling.jpg"] = Expect("quarantined", "dangling symlink")
    os.mkfifo(drop / "fifo.jpg")
    expect["fifo.jpg"] = Expect("quarantined", "not a regular file (a FIFO)")
    return drop, expect


def remove(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
