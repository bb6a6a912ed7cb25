"""The decode stage: a hashed file → a :class:`DecodedItem` (sizes, phash, thumbnail, the
encoder's input), on a worker; with ``--decode gpu``, JPEG pixels are left for one batched
decode on the encoder's device (:func:`decode_deferred`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from embedscope.config import IngestSettings
from embedscope.errors import DecodeError
from embedscope.ingest.decode import decode_bytes, perceptual_hash, thumbnail_jpeg
from embedscope.ingest.reading import read_entry_bytes
from embedscope.ingest.quality import quality_or_none
from embedscope.ingest.scan import FileEntry
from embedscope.store import schema as S

log = logging.getLogger(__name__)


@dataclass
class DecodedItem:
    """One image travelling from the decode stage to the encode and commit stages."""

    entry: FileEntry
    sha256: str
    width: int
    height: int
    format: str
    phash: int
    thumbnail: bytes
    pixels: np.ndarray | None  # the encoder's preprocessed CHW input (dropped once encoded)
    image: Any = None  # the decoded RGB image, kept only when a stage needs it (SAM2)
    variants: tuple[str, ...] = (S.VARIANT_FULL,)  # variants still missing for this sha
    deferred: Any = None  # --decode gpu: a jpeg_batch.Prepared whose pixels decode with the batch
    quality: dict[str, float] | None = None  # raw quality numbers (ingest/quality.py)


def draft_size(settings: IngestSettings, *, keep_image: bool) -> int:
    """The smallest side a JPEG may be draft-decoded to: what the encoder, the thumbnail and
    (when a stage keeps the image, SAM2) the segmenter need."""
    side = max(settings.image_size, settings.thumbnail_size)
    return max(side, settings.sam2_max_side) if keep_image else side


def decode_entry(
    entry: FileEntry,
    sha256: str,
    *,
    preprocessor: Callable[[Any], np.ndarray],
    settings: IngestSettings,
    keep_image: bool,
    draft_to: int,
    variants: tuple[str, ...],
    data: bytes | None = None,
    check_sha: bool = True,
) -> DecodedItem:
    """Decode one file and compute everything per-image that is not the model. Raises
    :class:`DecodeError` for anything that cannot be an image, and its subclass
    :class:`~embedscope.ingest.reading.UnreadableFile` for a file that cannot be read as named
    (or whose bytes no longer hash to ``sha256``; ``check_sha=False`` skips that check, for
    query files that have no stored hash).

    ``data``: the file's bytes, already in memory (an upload); ``entry.path`` is then only a
    label and is never opened."""
    if data is None:
        data = read_entry_bytes(entry, sha256 if check_sha else None, settings.max_file_bytes)
    decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=draft_to)
    image = decoded.image
    return _decoded_item(entry, sha256, decoded, image, settings, pixels=preprocessor(image),
                         keep=image if keep_image else None, variants=variants)


def decode_or_error(entry: FileEntry, sha256: str, **kwargs: Any) -> DecodedItem | DecodeError:
    """:func:`decode_entry`, with a :class:`DecodeError` returned instead of raised (a result
    that can travel back from a worker)."""
    try:
        return decode_entry(entry, sha256, **kwargs)
    except DecodeError as exc:
        return exc


def decode_entry_deferred(
    entry: FileEntry,
    sha256: str,
    *,
    preprocessor: Callable[[Any], np.ndarray],
    settings: IngestSettings,
    draft_to: int,
    variants: tuple[str, ...],
) -> DecodedItem:
    """``--decode gpu``'s CPU side: for an RGB/grayscale JPEG, the header checks and a small
    draft-mode decode (phash, thumbnail, and the truncation check), its pixels left to the
    batch decoder; any other file is decoded here as by :func:`decode_entry`."""
    from embedscope.ingest.jpeg_batch import prepare_jpeg

    data = read_entry_bytes(entry, sha256, settings.max_file_bytes)
    prepared = prepare_jpeg(data, max_pixels=settings.max_pixels, small_side=settings.thumbnail_size)
    if prepared is None:
        decoded = decode_bytes(data, max_pixels=settings.max_pixels, draft_to=draft_to)
        image, pixels = decoded.image, preprocessor(decoded.image)
    else:
        decoded, image, pixels = prepared.small, prepared.small.image, None
    return _decoded_item(entry, sha256, decoded, image, settings, pixels=pixels, variants=variants,
                         deferred=prepared)


def _decoded_item(entry: FileEntry, sha256: str, decoded: Any, small: Any, settings: IngestSettings, *,
                  pixels: Any, variants: tuple[str, ...], keep: Any = None, deferred: Any = None) -> DecodedItem:
    """A :class:`DecodedItem`: sizes from ``decoded``, phash and thumbnail from ``small``."""
    return DecodedItem(
        entry=entry,
        sha256=sha256,
        width=decoded.width,
        height=decoded.height,
        format=decoded.format,
        phash=perceptual_hash(small),
        thumbnail=thumbnail_jpeg(small, settings.thumbnail_size),
        pixels=pixels,
        image=keep,
        variants=variants,
        deferred=deferred,
        quality=quality_or_none(small),
    )


def decode_deferred(
    batch: list[DecodedItem],
    batch_decoder: Any,
    *,
    preprocessor: Callable[[Any], np.ndarray],
    max_pixels: int,
    draft_to: int,
    reject: Callable[[DecodedItem, str], None],
) -> None:
    """Decode the batch's deferred JPEGs together on ``batch_decoder``'s device (in place:
    ``pixels`` becomes a device tensor). A file the batch decoder refuses is decoded on the
    CPU instead; one that fails there too is passed to ``reject`` and leaves the batch."""
    todo = [it for it in batch if it.deferred is not None and it.pixels is None]
    if not todo:
        return
    failed: list[DecodedItem] = []
    for it, out in zip(todo, batch_decoder.decode([it.deferred for it in todo])):
        if isinstance(out, Exception):
            log.info("batched JPEG decode refused %s (%s); decoding it on the CPU", it.entry.path, out)
            try:
                decoded = decode_bytes(it.deferred.data, max_pixels=max_pixels, draft_to=draft_to)
                it.pixels = preprocessor(decoded.image)
            except DecodeError as exc:
                failed.append(it)
                reject(it, exc.message)
        else:
            it.pixels = out
        it.deferred = None
    if failed:
        batch[:] = [it for it in batch if all(it is not f for f in failed)]


def batched_decode(settings: IngestSettings) -> str:
    """Where JPEG pixels are decoded for these settings: ``cpu`` or ``gpu`` (raises a
    :class:`~embedscope.errors.ConfigError` for ``--decode gpu`` without CUDA)."""
    if settings.decode == "cpu":
        return "cpu"
    from embedscope.ingest.jpeg_batch import resolve_decode
    from embedscope.models.device import choose_device

    return resolve_decode(settings.decode, choose_device(settings.device))


def batch_decoder_for(settings: IngestSettings, preprocessor: Any, *, device: str | None = None) -> Any:
    """The ``--decode gpu`` batch decoder for ``preprocessor``'s input (a
    :class:`~embedscope.ingest.jpeg_batch.JpegBatchDecoder`), or ``None`` when JPEGs decode on
    the CPU. ``device`` overrides where it runs (the tests run the GPU path's code on ``"cpu"``)."""
    if device is None and batched_decode(settings) == "gpu":
        device = "cuda"
    if device is None:
        return None
    from embedscope.ingest.jpeg_batch import JpegBatchDecoder

    return JpegBatchDecoder(device, preprocessor.size, preprocessor.mean, preprocessor.std)
