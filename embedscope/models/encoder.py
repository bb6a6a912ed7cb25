"""The encoder interface every model family implements.

An encoder turns a batch of preprocessed images into unit-norm vectors, and (for families with
a text tower, e.g. CLIP) a list of strings into vectors in the same space. Ingest, ``similar
FILE``, the dashboard's search and every other caller build encoders through
:func:`embedscope.models.factory.create_encoder` and use only what this protocol names.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence, runtime_checkable

import numpy as np


@runtime_checkable
class TextEncoder(Protocol):
    """The text side of a family that has one."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit norm, in the image vectors' space."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """What a model family provides; see docs/architecture.md for how to add one."""

    name: str  # the registry name, e.g. dinov2_vits14
    family: str  # e.g. dinov2, openclip
    dim: int
    config: Any  # the family's registered config: input size, mean/std, weight source
    preprocessor: Any  # PIL image -> CHW float32 array at the encoder's input size
    weights: Any  # the resolved WeightSource (its ``label`` is stored with every row)

    def embed_images(self, batch: Any) -> np.ndarray:
        """``(B, dim)`` float32 unit-norm vectors for a batch of preprocessed images (a list of
        CHW arrays or a stacked tensor)."""
        ...

    @property
    def text(self) -> TextEncoder | None:
        """The text side, or None for image-only families."""
        ...
