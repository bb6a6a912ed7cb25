"""A small Python API for notebooks: ``embedscope.open(db)``.

>>> import embedscope
>>> es = embedscope.open("demo/db")                                  # doctest: +SKIP
>>> es.sql("SELECT label, count(*) n FROM images GROUP BY label")    # pandas DataFrame
>>> es.similar("demo/drop/cat.jpg", k=5, where="label = 'cats'")     # doctest: +SKIP
>>> ids, X = es.embeddings()              # list of sha256, (N, dim) float32 array

Every call reads the latest committed data (an ingest or the daemon may be writing).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from embedscope.store.db import Database


class EmbedscopeDB:
    """Read-only access to one database: SQL, similarity search, tables as pandas/NumPy."""

    def __init__(self, db: "Database") -> None:
        self.db = db
        self._text_vectors: Any = None  # the text-vector cache, made on the first search_text

    def __repr__(self) -> str:
        return f"embedscope.open({self.db.uri!r})"

    def sql(self, query: str, *, arrow: bool = False, limit: int | None = None) -> Any:
        """Run one read-only ``SELECT``; a pandas DataFrame, or an Arrow table with ``arrow=True``."""
        from embedscope.store.queries import run_sql

        self.db.refresh()
        table = run_sql(self.db, query, limit=limit)
        return table if arrow else table.to_pandas()

    def similar(self, query: "str | np.ndarray", *, k: int = 10, model: str | None = None,
                variant: str = "full", where: str | None = None, arrow: bool = False) -> Any:
        """Nearest images to a sha256, a stored path or a vector (see :func:`embedscope.store.queries.similar`)."""
        from embedscope.store.queries import similar

        self.db.refresh()
        table = similar(self.db, query, k=k, model=model, variant=variant, where=where)
        return table if arrow else table.to_pandas()

    def search_text(self, text: str, *, k: int = 20, model: str | None = None, where: str | None = None,
                    weights: str | None = None, arrow: bool = False) -> Any:
        """Images matching ``text`` through a CLIP table (default: the only one), nearest first;
        the text is embedded with the table's recorded weights (``weights``: a file's path when
        the table was embedded from a local file) and cached for this object's lifetime."""
        from embedscope.ingest.embed_text import TextVectors, pick_text_model
        from embedscope.store.queries import similar

        self.db.refresh()
        if self._text_vectors is None or self._text_vectors.weights != weights:
            self._text_vectors = TextVectors(weights=weights)
        model = pick_text_model(self.db, model)
        vector = self._text_vectors.vector(self.db, text, model)
        table = similar(self.db, vector, k=k, model=model, where=where)
        return table if arrow else table.to_pandas()

    @property
    def images(self) -> Any:
        """The ``images`` table as pandas, without thumbnails (``sql()`` has them)."""
        from embedscope.store import schema as S

        self.db.refresh()
        cols = [n for n in S.IMAGES_SCHEMA.names if n != "thumbnail"]
        return self.db.read(S.IMAGES, cols).to_pandas()

    def embeddings(self, model: str | None = None, variant: str = "full") -> "tuple[list[str], np.ndarray]":
        """``(sha256 ids, vectors)`` of one model and variant; vectors are (N, dim) float32."""
        from embedscope.store.search import pick_model
        from embedscope.store.vectors import vectors_to_numpy

        self.db.refresh()
        model = pick_model(self.db, model)
        table = self.db.read_embeddings(model, variant, columns=("sha256", "vector"))
        return table.column("sha256").to_pylist(), vectors_to_numpy(table.column("vector"))


def open(db: "str | os.PathLike[str]", *, storage_options: dict[str, str] | None = None) -> EmbedscopeDB:  # noqa: A001
    """Open an existing database folder (or object-store URI) for reading."""
    from embedscope.store.db import Database

    return EmbedscopeDB(Database(db, storage_options=storage_options))
