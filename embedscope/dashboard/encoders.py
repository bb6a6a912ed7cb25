"""The dashboard's one encoder cache: the ingest's encoders (through
:class:`embedscope.ingest.embed_file.QueryEmbedder`, which builds them with
:func:`embedscope.models.factory.create_encoder`), loaded once per (model, variant, weights)
in the server process and shared by every page that needs a network (search by an uploaded
image, within-image patch clusters). Loading one costs seconds.

When an encoder is loaded, one stored image is re-embedded and compared with its stored
vector, so a dashboard started with other ``--image-size`` / ``--preprocess`` than the ingest
says so on screen instead of returning meaningless results.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

CHECK_MIN_SIMILARITY = 0.999  # re-embedding a stored image must give (almost) its stored vector


@dataclass
class LoadedEncoder:
    """A loaded query embedder plus the result of its self-check on one stored image."""

    embedder: Any  # embedscope.ingest.embed_file.QueryEmbedder
    settings: Any  # the IngestSettings it embeds with
    check_sha: str | None = None
    check_similarity: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)  # one direct encoder call at a time

    @property
    def encoder(self) -> Any:
        """The image encoder itself (:class:`embedscope.models.encoder.Encoder`)."""
        return self.embedder.encoders.encoder


class EncoderCache:
    """Encoders built on first use and kept per (model, variant, weights label).

    ``flags`` (image_size, preprocess, device, weights; None = not given) and ``config_file``
    (a TOML file with an ``[ingest]`` section) say how to embed: they must match the ingest.
    """

    def __init__(self, flags: Mapping[str, Any] | None = None, config_file: str | None = None) -> None:
        self.flags = dict(flags or {})
        self.config_file = config_file
        self._items: dict[tuple[str, str, str], LoadedEncoder] = {}
        self._lock = threading.Lock()

    def get(self, db: Any, model: str, variant: str, weights_label: str) -> LoadedEncoder:
        """The encoder for ``model``/``variant`` vectors stored with ``weights_label``; raises
        :class:`~embedscope.errors.WeightsNotFoundError` when those weights cannot be loaded."""
        from embedscope.ingest.embed_file import QueryEmbedder, query_settings

        key = (model, variant, weights_label)
        with self._lock:
            hit = self._items.get(key)
            if hit is None:
                settings = query_settings(model, weights_label, self._flags_for(model), config_file=self.config_file)
                hit = LoadedEncoder(QueryEmbedder(settings, variant=variant, expect_weights=weights_label), settings)
                _self_check(db, hit, model, variant)
                self._items[key] = hit
            return hit

    def _flags_for(self, model: str) -> dict[str, Any]:
        """The flags for ``model``: ``image_size`` only where the model takes that size (as in
        a multi-model ingest, a CLIP model with one trained input size keeps its own)."""
        from embedscope.errors import ConfigError
        from embedscope.models.factory import check_encoder_options

        size = self.flags.get("image_size")
        if size:
            try:
                check_encoder_options(model, image_size=size)
            except ConfigError:
                return {**self.flags, "image_size": None}
        return self.flags


def _self_check(db: Any, item: LoadedEncoder, model: str, variant: str, tries: int = 3) -> None:
    """Re-embed a stored image whose file is still there; record the cosine to its stored vector."""
    import numpy as np

    from embedscope.errors import EmbedscopeError
    from embedscope.hashing import sha256_bytes
    from embedscope.store import schema as S
    from embedscope.store import views
    from embedscope.store.filters import eq

    t = db.dataset(S.embeddings_table_name(model)).to_table(columns=["sha256", "vector"], filter=eq("variant", variant),
                                                            limit=tries)
    for sha, vec in zip(t.column("sha256").to_pylist()[:tries], t.column("vector").to_pylist()[:tries]):
        for path in views.stored_paths(db, sha):  # paths from the database, never from a request
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if sha256_bytes(data) != sha:
                continue
            try:
                new = item.embedder.embed_bytes([data])[0]
            except EmbedscopeError:
                continue
            a, b = np.asarray(vec, np.float64), np.asarray(new, np.float64)
            item.check_sha = sha
            item.check_similarity = float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
            return
