"""Embed image files that are not in the database, exactly as ingest would have.

Used by ``embedscope similar IMAGE_PATH`` for a query image the database does not hold. It
reuses the ingest pipeline's own pieces (``decode_entry``, the variant stages built by
``load_encoders``), so decoding, preprocessing and the model are the same code path.

The weights must be the ones the table was embedded with: :func:`weights_spec_for` turns
the stored ``weights`` label into a ``--weights`` value (``random`` → ``random``,
``hub:<repo>`` → ``hub``), and a ``file:<sha256>`` label needs the user to point at that
file (its sha256 is checked).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from typing import Sequence

import numpy as np

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError, WeightsNotFoundError
from embedscope.store import schema as S


def weights_spec_for(label: str, given: str | None) -> str:
    """The ``--weights`` value that reproduces vectors stored with weights ``label``."""
    if given:
        return given
    if label == "random":
        return "random"
    if label.startswith("hub:"):
        return "hub"
    if label.startswith("file:"):
        raise WeightsNotFoundError(
            f"the table was embedded with a local weights file (sha256 {label[5:17]}…)",
            "pass --weights PATH to that same file to embed a new image with it",
        )
    raise WeightsNotFoundError(f"cannot reproduce weights {label!r} for an on-the-fly embedding",
                               "pass --weights hub|random|PATH matching the table")


def embed_files(paths: Sequence[str], settings: IngestSettings, *, variant: str, expect_weights: str) -> np.ndarray:
    """Vectors ``(len(paths), dim)`` of ``variant`` for image files, as ingest would store them.

    ``expect_weights`` is the table's ``weights`` label: the resolved weights must match it.
    """
    from embedscope.ingest.pipeline import decode_entry, load_encoders
    from embedscope.ingest.scan import FileEntry

    settings = replace(settings, sam2=variant == S.VARIANT_SAM2,
                       store_patch_mean=variant == S.VARIANT_PATCH_MEAN)
    encoders = load_encoders(settings)
    label = encoders.encoder.weights.label
    if label != expect_weights:
        raise WeightsNotFoundError(
            f"weights {label!r} differ from the table's {expect_weights!r}: vectors would not be comparable",
            "pass --weights matching the table (see `embedscope query \"SELECT DISTINCT model, weights FROM embeddings\"`)",
        )
    keep = any(s.needs_image for s in encoders.stages)
    draft = max(settings.image_size, settings.thumbnail_size, settings.sam2_max_side if keep else 0)
    items = []
    for i, path in enumerate(paths):
        st = os.stat(path)
        entry = FileEntry(os.path.abspath(path), os.path.dirname(os.path.abspath(path)), st.st_size,
                          dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc))
        items.append(decode_entry(entry, f"query{i}", preprocessor=encoders.encoder.preprocessor,
                                  settings=settings, keep_image=keep, draft_to=draft, variants=(variant,)))
    for stage in encoders.stages:
        for name, rows in stage.process(items).items():
            if name.startswith(S.EMBEDDINGS_PREFIX):
                rows = rows.filter(rows.column("variant").to_numpy(zero_copy_only=False) == variant)
                if rows.num_rows:
                    vec = rows.column("vector").combine_chunks()
                    return np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32).reshape(
                        rows.num_rows, -1)
    raise ConfigError(f"no stage produces the {variant!r} variant", "use --variant full")
