"""embedscope: index image collections by their embeddings, analyse them, explore them.

``import embedscope`` is cheap: no torch, no LanceDB until a function needs them.
``embedscope.open(db)`` (see :mod:`embedscope.api`) is resolved on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name == "open":
        from embedscope.api import open as _open

        return _open
    raise AttributeError(f"module 'embedscope' has no attribute {name!r}")
