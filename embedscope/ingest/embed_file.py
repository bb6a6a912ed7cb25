"""Embed image files that are not in the database, exactly as ingest would have.

Used by ``embedscope similar IMAGE_PATH`` for a query image the database does not hold, and by
the dashboard's search by an uploaded image (:class:`QueryEmbedder`, bytes in memory). It
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
from typing import Any, Mapping, Sequence

import numpy as np

from embedscope.config import IngestSettings
from embedscope.errors import ConfigError, WeightsNotFoundError
from embedscope.store import filters
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


def table_weights_label(db: Any, model: str, variant: str) -> str:
    """The one ``weights`` label of ``model``/``variant``'s stored vectors (a new image must be
    embedded with those weights); :class:`QueryError` when the table mixes several."""
    from embedscope.errors import QueryError

    rows = db.read(S.embeddings_table_name(model), ["weights"], where=filters.eq("variant", variant))
    labels = sorted({w for w in rows.column("weights").to_pylist() if w})
    if len(labels) != 1:
        raise QueryError(f"{model}/{variant} holds vectors from {len(labels)} weight sources ({', '.join(labels)})",
                         "re-ingest with one set of weights before searching by a new image")
    return labels[0]


def query_settings(model: str, weights_label: str, flags: Mapping[str, Any], *,
                   config_file: str | None = None) -> IngestSettings:
    """Ingest settings to embed a new image into ``model``'s table: ``flags`` (image_size,
    preprocess, device, weights; ``None`` = not given) > EMBEDSCOPE_* env > the TOML
    ``[ingest]`` section > defaults, with the weights the table records unless given."""
    from embedscope.config import load_settings

    values = {**{k: v for k, v in flags.items() if v is not None}, "model": model, "batch_size": 2,
              "weights": weights_spec_for(weights_label, flags.get("weights"))}
    from embedscope.ingest.encoders import with_model_image_size

    return with_model_image_size(load_settings(IngestSettings, values, section="ingest", config_file=config_file))


def embed_files(paths: Sequence[str], settings: IngestSettings, *, variant: str, expect_weights: str) -> np.ndarray:
    """Vectors ``(len(paths), dim)`` of ``variant`` for image files, as ingest would store them.

    ``expect_weights`` is the table's ``weights`` label: the resolved weights must match it.
    """
    return QueryEmbedder(settings, variant=variant, expect_weights=expect_weights).embed_paths(paths)


class QueryEmbedder:
    """The ingest's encoders for one (settings, variant), loaded once and reused: embed query
    images given as files (the CLI) or as bytes in memory (a dashboard upload, never written
    anywhere). Raises :class:`WeightsNotFoundError` when the resolved weights are not the
    table's ``expect_weights``. One embedding at a time per instance (a lock).

    >>> q = QueryEmbedder(settings, variant="full", expect_weights="random")  # doctest: +SKIP
    >>> q.embed_bytes([open("cat.jpg", "rb").read()]).shape                  # doctest: +SKIP
    (1, 384)
    """

    def __init__(self, settings: IngestSettings, *, variant: str, expect_weights: str) -> None:
        import threading

        from embedscope.ingest.encoders import load_encoders

        self.settings = replace(settings, sam2=variant == S.VARIANT_SAM2,
                                store_patch_mean=variant == S.VARIANT_PATCH_MEAN)
        self.variant = variant
        self.encoders = load_encoders(self.settings)
        self.weights = self.encoders.encoder.weights.label
        if self.weights != expect_weights:
            raise WeightsNotFoundError(
                f"weights {self.weights!r} differ from the table's {expect_weights!r}: vectors would not be comparable",
                "pass --weights matching the table (see `embedscope query \"SELECT DISTINCT model, weights FROM embeddings\"`)",
            )
        self._lock = threading.Lock()

    def embed_paths(self, paths: Sequence[str]) -> np.ndarray:
        """Vectors ``(len(paths), dim)`` for image files."""
        from embedscope.ingest.scan import FileEntry

        entries = []
        for path in paths:
            st = os.stat(path)
            entries.append((FileEntry(os.path.abspath(path), os.path.dirname(os.path.abspath(path)), st.st_size,
                                      dt.datetime.fromtimestamp(st.st_mtime, dt.timezone.utc)), None))
        return self._embed(entries)

    def embed_bytes(self, blobs: Sequence[bytes], names: Sequence[str] | None = None) -> np.ndarray:
        """Vectors ``(len(blobs), dim)`` for encoded images held in memory (decoded by the
        safe decoder: :class:`DecodeError` for anything that is not a whole image)."""
        from embedscope.ingest.scan import FileEntry

        now = dt.datetime.now(dt.timezone.utc)
        names = list(names) if names is not None else [f"upload{i}" for i in range(len(blobs))]
        return self._embed([(FileEntry(f"<upload:{n}>", "<upload>", len(b), now), bytes(b))
                            for n, b in zip(names, blobs)])

    def _embed(self, entries: Sequence[tuple]) -> np.ndarray:
        from embedscope.ingest.decode_stage import decode_entry, draft_size
        from embedscope.store.vectors import vectors_to_numpy

        settings, encoders = self.settings, self.encoders
        keep = any(s.needs_image for s in encoders.stages)
        draft = draft_size(settings, keep_image=keep)
        with self._lock:
            items = [decode_entry(entry, f"query{i}", preprocessor=encoders.encoder.preprocessor, settings=settings,
                                  keep_image=keep, draft_to=draft, variants=(self.variant,), data=data,
                                  check_sha=False)
                     for i, (entry, data) in enumerate(entries)]
            for stage in encoders.stages:
                for name, rows in stage.process(items).items():
                    if name.startswith(S.EMBEDDINGS_PREFIX):
                        rows = rows.filter(rows.column("variant").to_numpy(zero_copy_only=False) == self.variant)
                        if rows.num_rows:
                            return vectors_to_numpy(rows)
        raise ConfigError(f"no stage produces the {self.variant!r} variant", "use --variant full")
