"""Text queries as vectors in a stored CLIP table's space: the text side of search.

A text is embedded with the text tower of the model a table was ingested with, and with
**the weights that table records** (its ``weights`` label, turned into a ``--weights`` value
by :func:`~embedscope.ingest.embed_file.weights_spec_for`, as for a query image): a text
vector from other weights would not be comparable with the stored image vectors.

:class:`TextVectors` is the serving process's cache: one encoder per (model, weights),
loaded on first use, and one vector per (model, weights, text). The CLI, the API and the
dashboard each hold one; DuckDB's ``text_vector`` / ``similar_to_text`` call it through
:meth:`TextVectors.sql_functions`.

>>> tv = TextVectors()                                              # doctest: +SKIP
>>> tv.vector(db, "a chest x-ray with a pacemaker").shape           # doctest: +SKIP
(512,)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Sequence

import numpy as np

from embedscope.errors import ConfigError, NotFoundError, WeightsNotFoundError
from embedscope.store import schema as S


def has_text_tower(model: str) -> bool:
    """Whether ``model``'s family embeds texts (CLIP) — asked of a lazily built encoder, which
    loads no weights and builds no network."""
    from embedscope.models.factory import create_encoder
    from embedscope.models.registry import ENCODERS

    if model not in ENCODERS:
        return False
    return create_encoder(model, weights="random").text is not None


def text_models(db: Any) -> list[str]:
    """The models with stored embeddings whose family has a text tower."""
    from embedscope.store.search import stored_models

    return [m for m in stored_models(db) if has_text_tower(m)]


def pick_text_model(db: Any, model: str | None) -> str:
    """``model`` (checked: stored and text-capable), else the only CLIP-family table."""
    from embedscope.store.search import pick_model, stored_models

    if model:
        pick_model(db, model)  # stored?
        if not has_text_tower(model):
            raise ConfigError(f"{model} embeds images only, not text",
                              f"pick a CLIP model: {', '.join(text_models(db)) or 'none stored'}")
        return model
    models = text_models(db)
    if len(models) == 1:
        return models[0]
    if not models:
        stored = ", ".join(stored_models(db)) or "none"
        raise NotFoundError(f"no CLIP-family embeddings to search by text in {db.uri} (models: {stored})",
                            "ingest with an openclip model, e.g. `embedscope ingest DROP --db DB --model openclip_vitb32`")
    raise ConfigError(f"several CLIP-family tables: {', '.join(models)}", "pick one with --model")


class TextVectors:
    """Text → unit vector in a stored table's space, cached per (model, weights, text).

    ``weights`` overrides the table's recorded weights (needed when the table was embedded
    from a local file: pass its path; the file's sha256 must match the table's label).
    ``max_texts`` bounds the vector cache (least recently used out). Thread-safe."""

    def __init__(self, *, weights: str | None = None, device: str = "auto", precision: str = "fp32",
                 max_texts: int = 4096) -> None:
        self.weights = weights
        self.device = device
        self.precision = precision
        self.max_texts = max_texts
        self._encoders: dict[tuple[str, str], Any] = {}
        self._vectors: OrderedDict[tuple[str, str, str], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self.forwards = 0  # texts actually embedded (not served from the cache)

    def vector(self, db: Any, text: str, model: str | None = None, *, variant: str = S.VARIANT_FULL) -> np.ndarray:
        """``text``'s vector in ``model``'s table (default: the only CLIP table)."""
        return self.vectors(db, [text], model, variant=variant)[0]

    def vectors(self, db: Any, texts: Sequence[str], model: str | None = None, *,
                variant: str = S.VARIANT_FULL) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit norm, in ``model``'s stored space."""
        from embedscope.ingest.embed_file import table_weights_label

        model = pick_text_model(db, model)
        label = table_weights_label(db, model, variant)
        with self._lock:
            missing = [t for t in dict.fromkeys(texts) if (model, label, t) not in self._vectors]
            if missing:
                fresh = self._encoder(model, label).text.embed_texts(missing)
                self.forwards += len(missing)
                for t, v in zip(missing, fresh):
                    self._vectors[(model, label, t)] = v
            out = []
            for t in texts:
                self._vectors.move_to_end((model, label, t))
                out.append(self._vectors[(model, label, t)])
            while len(self._vectors) > self.max_texts:
                self._vectors.popitem(last=False)
        return np.stack(out) if out else np.empty((0, 0), np.float32)

    def _encoder(self, model: str, label: str) -> Any:
        from embedscope.ingest.embed_file import weights_spec_for
        from embedscope.models.factory import create_encoder

        key = (model, label)
        if key not in self._encoders:
            enc = create_encoder(model, weights=weights_spec_for(label, self.weights), device=self.device,
                                 precision=self.precision)
            if enc.weights.label != label:
                raise WeightsNotFoundError(
                    f"weights {enc.weights.label!r} differ from the table's {label!r}: text and image vectors "
                    "would not be comparable", "pass --weights matching the table")
            self._encoders[key] = enc
        return self._encoders[key]

    def functions_for(self, db: Any, sql: str) -> dict[str, Any] | None:
        """:meth:`sql_functions` when ``sql`` names ``text_vector`` / ``similar_to_text``, else
        None (a query that does not use them never loads a model)."""
        if not names_text_functions(sql or ""):
            return None
        self._warm_default(db)
        return self.sql_functions(db)

    def _warm_default(self, db: Any) -> None:
        """Build the default text model's network before the query starts, so that a SQL
        statement timeout measures the query, not the model's loading."""
        from embedscope.errors import EmbedscopeError
        from embedscope.ingest.embed_file import table_weights_label

        try:
            model = pick_text_model(db, None)
            encoder = self._encoder(model, table_weights_label(db, model, S.VARIANT_FULL))
        except EmbedscopeError:  # several CLIP tables, or none: the query names its model, or fails itself
            return
        encoder.load()

    def sql_functions(self, db: Any) -> dict[str, Any]:
        """The DuckDB functions behind SQL's ``text_vector(text, model_name := NULL)`` and
        ``similar_to_text(text, k)`` (see :mod:`embedscope.store.sql`): the vector of a text, and
        the model a NULL ``model_name`` means. Nothing loads until a query calls them."""
        from embedscope.store.sql import SqlFunction

        def text_vector(text: str | None, model: str | None) -> list[float] | None:
            return None if text is None else self.vector(db, text, model).tolist()

        def text_model(model: str | None) -> str:
            return pick_text_model(db, model)

        return {"_text_vector": SqlFunction(text_vector, ("VARCHAR", "VARCHAR"), "FLOAT[]"),
                "_text_model": SqlFunction(text_model, ("VARCHAR",), "VARCHAR")}


def names_text_functions(sql: str) -> bool:
    """Whether a query calls ``text_vector`` or ``similar_to_text`` (then a text model is needed)."""
    lowered = sql.lower()
    return "text_vector" in lowered or "similar_to_text" in lowered
