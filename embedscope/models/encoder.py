"""The encoder interface every model family implements.

An encoder turns a batch of preprocessed images into unit-norm vectors, and (for families with
a text tower, e.g. CLIP) a list of strings into vectors in the same space. Ingest, ``similar
FILE``, the dashboard's search and every other caller build encoders through
:func:`embedscope.models.factory.create_encoder` and use only what :class:`Encoder` names.

A family is one module, ``embedscope/models/<family>.py``, providing the two functions of
:class:`EncoderFamily`; the registry (:mod:`embedscope.models.registry`) maps the family's name
to that module. docs/adding-an-encoder.md walks through adding one.

Nothing here imports torch: batches and vectors cross this interface as NumPy arrays (or, for
batches, a tensor the encoder made itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Sequence, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from embedscope.models.preprocess import Preprocessor
    from embedscope.models.registry import EncoderConfig
    from embedscope.models.weights import WeightSource


@dataclass
class Embeddings:
    """One batch's vectors: what the ingest stores per image."""

    cls: np.ndarray  # (B, dim) float32, unit norm: the image vector (``embed_images``)
    patch_mean: np.ndarray | None  # (B, dim) float32, unit norm, when asked for and the family has patches


@runtime_checkable
class TextEncoder(Protocol):
    """The text side of a family that has one (``Encoder.text``)."""

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32, unit norm, in the image vectors' space."""
        ...


@runtime_checkable
class Encoder(Protocol):
    """What every family's encoder provides.

    The network is built on first use (``load()`` builds it now), so a run that finds nothing
    new never pays for it; ``device_name`` and ``precision`` hold what was asked for until
    then and what was chosen after. One caller at a time.

    ``isinstance(obj, Encoder)`` checks that the members exist (it builds nothing).
    """

    name: str  # the registry name, e.g. dinov2_vits14
    family: str  # e.g. dinov2, openclip
    dim: int
    config: EncoderConfig  # the registered config: input size, mean/std, weight source
    preprocessor: Preprocessor  # PIL image -> CHW float32 array at the encoder's input size
    weights: WeightSource  # the resolved weights (its ``label`` is stored with every row)
    device_name: str  # auto | cpu | cuda[:N] (resolved when the network is built)
    precision: str  # auto | fp32 | bf16 (resolved when the network is built)

    def load(self) -> None:
        """Build the network now (on the chosen device, in the chosen precision)."""
        ...

    def embed_images(self, batch: Any) -> np.ndarray:
        """``(B, dim)`` float32 unit-norm vectors for a batch of preprocessed images (a list of
        CHW arrays or a stacked array/tensor)."""
        ...

    def embed(self, batch: Any, *, patch_mean: bool = False) -> Embeddings:
        """``embed_images`` plus, with ``patch_mean``, the unit-norm mean of the patch tokens
        (families without patch tokens raise :class:`~embedscope.errors.ConfigError`)."""
        ...

    def choose_batch_size(self, requested: int) -> int:
        """``requested`` if > 0, else a batch size that suits the device (builds the network)."""
        ...

    @property
    def text(self) -> TextEncoder | None:
        """The text side, or None for image-only families."""
        ...


class EncoderFamily(Protocol):
    """What a family module (``embedscope/models/<family>.py``) provides to the factory.

    Both are module-level functions; the factory calls ``check_image_size`` before it resolves
    any weights, then ``build_encoder``.
    """

    def check_image_size(self, config: EncoderConfig, image_size: int) -> None:
        """Raise :class:`~embedscope.errors.ConfigError` unless the family's networks accept
        ``image_size`` (e.g. a multiple of the patch size)."""
        ...

    def build_encoder(self, config: EncoderConfig, weights: WeightSource, *, device: str, image_size: int,
                      preprocess: str, precision: str, compile: bool, torch_threads: int) -> Encoder:
        """The family's encoder for ``config`` with ``weights`` (the network may be built lazily)."""
        ...
