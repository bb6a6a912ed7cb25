"""A small Python API for notebooks: ``embedscope.open(db)``.

>>> import embedscope
>>> es = embedscope.open("demo/db")                                  # doctest: +SKIP
>>> es.sql("SELECT label, count(*) n FROM images GROUP BY label")    # pandas DataFrame
>>> es.sql("SELECT * FROM similar_to_text('a dog on a sofa', 10)")    # a CLIP table  # doctest: +SKIP
>>> es.similar("demo/drop/cat.jpg", k=5, where="label = 'cats'")     # doctest: +SKIP
>>> es.similar_many(vectors, k=10)        # one DataFrame per query row  # doctest: +SKIP
>>> ids, X = es.embeddings()              # list of sha256, (N, dim) float32 array
>>> es.tag("label = 'cats' AND is_novel", "exclude", note="odd ones")  # doctest: +SKIP
>>> es.tags()                             # the current tags (image_tags view)  # doctest: +SKIP

Every call reads the latest committed data (an ingest or the daemon may be writing); searches
see it within ``recheck_s`` seconds (default 1): the handle keeps a
:class:`~embedscope.store.search_cache.SearchIndexCache` (in-memory graph index, image map)
so a search costs about a millisecond instead of tens.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from embedscope.store.db import Database
    from embedscope.store.search_cache import SearchIndexCache


class EmbedscopeDB:
    """Access to one database: SQL, similarity search, tables as pandas/NumPy (read-only), and
    the curator's tags (the one thing it writes, an append-only log)."""

    def __init__(self, db: "Database", *, search_cache: "SearchIndexCache | None" = None) -> None:
        from embedscope.store.search_cache import SearchIndexCache

        self.db = db
        self.search_cache = search_cache if search_cache is not None else SearchIndexCache()
        self._text_vectors: Any = None  # the text-vector cache, made on the first text query

    def __repr__(self) -> str:
        return f"embedscope.open({self.db.uri!r})"

    def sql(self, query: str, *, arrow: bool = False, limit: int | None = None) -> Any:
        """Run one read-only ``SELECT``; a pandas DataFrame, or an Arrow table with ``arrow=True``.

        A query may call ``similar_to_text('a dog', 20)`` and ``text_vector('a dog')`` over a
        CLIP table (the text embedded with the table's weights, cached like :meth:`search_text`);
        a query that names neither loads no model."""
        from embedscope.store.queries import run_sql

        self.db.refresh()
        table = run_sql(self.db, query, limit=limit, functions=(self._text_vectors or self._text_cache(None)).functions_for(self.db, query))
        return table if arrow else table.to_pandas()

    def similar(self, query: "str | np.ndarray", *, k: int = 10, model: str | None = None,
                variant: str = "full", where: str | None = None, arrow: bool = False) -> Any:
        """Nearest images to a sha256, a stored path or a vector (see :func:`embedscope.store.search.similar`)."""
        return self.similar_many([query], k=k, model=model, variant=variant, where=where, arrow=arrow)[0]

    def similar_many(self, queries: "Any", *, k: int = 10, model: str | None = None, variant: str = "full",
                     where: str | None = None, arrow: bool = False) -> list[Any]:
        """:meth:`similar` for many queries (a list, or an (m, dim) array of vectors) in one
        call: one result per query, in order (see :func:`embedscope.store.search.similar_many`)."""
        from embedscope.store.search import similar_many

        tables = similar_many(self.db, queries, k=k, model=model, variant=variant, where=where,
                              cache=self.search_cache)
        return tables if arrow else [t.to_pandas() for t in tables]

    def search_text(self, text: str, *, k: int = 20, model: str | None = None, where: str | None = None,
                    weights: str | None = None, arrow: bool = False) -> Any:
        """Images matching ``text`` through a CLIP table (default: the only one), nearest first;
        the text is embedded with the table's recorded weights (``weights``: a file's path when
        the table was embedded from a local file) and cached for this object's lifetime."""
        from embedscope.ingest.embed_text import pick_text_model
        from embedscope.store.queries import similar

        self.db.refresh()
        model = pick_text_model(self.db, model)
        vector = self._text_cache(weights).vector(self.db, text, model)
        table = similar(self.db, vector, k=k, model=model, where=where, cache=self.search_cache)
        return table if arrow else table.to_pandas()

    def _text_cache(self, weights: str | None) -> Any:
        """The handle's :class:`~embedscope.ingest.embed_text.TextVectors` (a new one when
        ``weights`` differ from the current one's); made on first use, so nothing loads before."""
        from embedscope.ingest.embed_text import TextVectors

        if self._text_vectors is None or self._text_vectors.weights != weights:
            self._text_vectors = TextVectors(weights=weights)
        return self._text_vectors

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


    def tag(self, shas_or_where: "str | Any", tag: str, *, note: str | None = None, remove: bool = False,
            wait_lock: float = 0.0) -> int:
        """Tag (or with ``remove=True`` untag) images: a SQL condition over ``images_latest``, or
        an iterable of sha256. Appends to the ``tags`` log (source ``api``); returns how many."""
        from embedscope.store.tags import shas_where, tag_images

        self.db.refresh()
        shas = shas_where(self.db, shas_or_where) if isinstance(shas_or_where, str) else list(shas_or_where)
        return tag_images(self.db, shas, tag, note=note, remove=remove, source="api", wait_lock=wait_lock)

    def tags(self, *, arrow: bool = False) -> Any:
        """The current tags (``image_tags``: sha256, tag, note, tagged_at) as pandas (or Arrow)."""
        from embedscope.store.tags import current_tags

        self.db.refresh()
        table = current_tags(self.db)
        return table if arrow else table.to_pandas()


def open(db: "str | os.PathLike[str]", *, storage_options: dict[str, str] | None = None) -> EmbedscopeDB:  # noqa: A001
    """Open an existing database folder (or object-store URI) for reading."""
    from embedscope.store.db import Database

    return EmbedscopeDB(Database(db, storage_options=storage_options))
