"""embedscope: index image collections by their embeddings, analyse them, explore them.

``import embedscope`` is cheap: no torch, no LanceDB until a function needs them.
"""

from __future__ import annotations

__version__ = "0.1.0"
