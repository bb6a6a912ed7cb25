"""Several models in one ingest: each image is decoded once and embedded by each model into its
own table; a model added later embeds only what its table lacks. Decodes are counted by
wrapping the runner's decode function (the real one still runs)."""

from __future__ import annotations

import numpy as np
import pytest

from embedscope.config import IngestSettings
from embedscope.ingest import pipeline
from embedscope.store.db import Database
from tests.conftest import make_photo, save_jpeg

MODELS = "dinov2_vits14,openclip_vitb32"


@pytest.fixture
def decodes(monkeypatch):
    """The sha256 of every image the threaded runner decodes."""
    seen: list[str] = []
    real = pipeline.decode_entry

    def counting(entry, sha, **kw):
        seen.append(sha)
        return real(entry, sha, **kw)

    monkeypatch.setattr(pipeline, "decode_entry", counting)
    return seen


def ingest(drop, db, model: str):
    settings = IngestSettings(drops=(str(drop),), db=str(db), model=model, weights="random", image_size=56 if
                              model.startswith("dinov2") else 0, batch_size=8, progress=False, device="cpu",
                              precision="fp32")
    return pipeline.run_ingest(settings)


def rows(db, model: str) -> int:
    d = Database(db)
    name = f"embeddings_{model}"
    return d.count(name) if d.has_table(name) else 0


def test_two_models_decode_each_image_once_and_a_model_added_later_embeds_only_what_is_missing(tmp_path, decodes):
    drop, db = tmp_path / "drop", tmp_path / "db"
    for i in range(5):
        save_jpeg(make_photo(i, (150 + 9 * i, 110)), drop / f"{i}.jpg")
    ingest(drop, db, "dinov2_vits14")
    assert len(decodes) == 5 and rows(db, "openclip_vitb32") == 0
    decodes.clear()
    for i in range(5, 7):
        save_jpeg(make_photo(i, (150, 110)), drop / f"{i}.jpg")
    summary = ingest(drop, db, MODELS)
    assert len(decodes) == len(set(decodes)) == 7  # 5 known need CLIP only, 2 new need both: one decode each
    assert summary.embedded == {"full": 2, "openclip_vitb32:full": 7}
    assert rows(db, "dinov2_vits14") == 7 and rows(db, "openclip_vitb32") == 7
    decodes.clear()
    again = ingest(drop, db, MODELS)
    assert decodes == [] and again.duplicates == 7  # nothing missing for either model

    # each model's own preprocessing: the CLIP vectors are those of its own encoder on the image
    import embedscope
    from embedscope.models.factory import create_encoder
    from PIL import Image

    ids, X = embedscope.open(db).embeddings("openclip_vitb32")
    enc = create_encoder("openclip_vitb32", weights="random", device="cpu", precision="fp32")
    paths = dict(embedscope.open(db).sql("SELECT sha256, path FROM images").values.tolist())
    expected = enc.embed_images([enc.preprocessor(Image.open(paths[s]).convert("RGB")) for s in ids])
    assert np.min(np.sum(X * expected, axis=1)) > 0.999
