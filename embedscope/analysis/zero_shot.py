"""Zero-shot tags: each image's most probable tag among a few texts, through a CLIP table.

The method (:func:`zero_shot_tags`, arrays in, arrays out) is CLIP's zero-shot classifier:
a softmax over the tags of ``LOGIT_SCALE × cosine(image, prompt)``, where each tag's prompt
is ``prompt.format(tag)`` ("a photo of a {}"). ``LOGIT_SCALE`` is 100, the value CLIP's
learned temperature is clamped to and the one trained checkpoints end at; it turns cosines
that differ by a few hundredths into clear probabilities. Stored per image: the best tag,
its probability and the margin (best minus runner-up probability).

The job (:func:`run_zero_shot`) writes one ``zero_shot`` row per image and a
``kind='zero_shot'`` run whose params hold the tags, the prompt and the scale. It takes the
prompt vectors from its caller (the CLI embeds them with the table's text tower), so
analysis needs no model.

**Label disagreement** (a hint at a wrong folder label): an image whose label *names one of
the tags* and whose best tag is another one, with probability ≥ ``min_probability``
(default 0.8). A label names a tag when both are equal after :func:`tag_key` (case
ignored, ``_``/``-`` read as spaces, one trailing ``s`` ignored: ``Cats`` names ``cat``).
Images whose label names no tag are never marked. It is only as good as the prompts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pyarrow as pa

from embedscope.analysis.params import new_run_id
from embedscope.analysis.reading import image_columns, read_embeddings
from embedscope.analysis.rows import write_run
from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.runs import KIND_ZERO_SHOT

LOGIT_SCALE = 100.0  # CLIP's logit scale (exp of its learned temperature, clamped at 100)
DEFAULT_PROMPT = "a photo of a {}"
DISAGREEMENT_MIN_PROBABILITY = 0.8


@dataclass
class ZeroShot:
    """Per image: index of the best tag, its probability, and best minus runner-up."""

    best: np.ndarray  # (N,) int
    probability: np.ndarray  # (N,) float32
    margin: np.ndarray  # (N,) float32


def zero_shot_tags(X: np.ndarray, T: np.ndarray, *, scale: float = LOGIT_SCALE) -> ZeroShot:
    """Image vectors ``X`` (N, d) against tag vectors ``T`` (t, d), both unit norm."""
    logits = scale * (np.asarray(X, np.float64) @ np.asarray(T, np.float64).T)
    logits -= logits.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    best = np.argmax(p, axis=1)
    top2 = np.sort(p, axis=1)[:, -2:] if p.shape[1] > 1 else np.concatenate([np.zeros_like(p), p], axis=1)
    return ZeroShot(best, p[np.arange(len(p)), best].astype(np.float32), (top2[:, 1] - top2[:, 0]).astype(np.float32))


def tag_key(name: str) -> str:
    """The form a label and a tag are matched in (see the module's docstring)."""
    key = " ".join(name.lower().replace("_", " ").replace("-", " ").split())
    return key[:-1] if key.endswith("s") and len(key) > 1 else key


def label_disagreements(labels: Sequence[str | None], tags: Sequence[str], result: ZeroShot, *,
                        min_probability: float = DISAGREEMENT_MIN_PROBABILITY) -> np.ndarray:
    """(N,) bool: the label names a tag, the best tag is another, with at least ``min_probability``."""
    keys = {tag_key(t): i for i, t in enumerate(tags)}
    out = np.zeros(len(labels), bool)
    for row, label in enumerate(labels):
        named = keys.get(tag_key(label)) if label else None
        out[row] = named is not None and named != result.best[row] and result.probability[row] >= min_probability
    return out


def parse_tags(text: str) -> list[str]:
    """``"cat, dog,x-ray"`` → ``["cat", "dog", "x-ray"]``; at least two, no repeats."""
    tags = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    if len(tags) < 2:
        raise ConfigError(f"--zero-shot {text!r}: give at least two tags", 'e.g. --zero-shot "cat,dog,x-ray"')
    return tags


def prompts(tags: Sequence[str], prompt: str) -> list[str]:
    """The text embedded per tag: ``prompt`` with ``{}`` replaced by the tag."""
    if "{}" not in prompt:
        raise ConfigError(f"--prompt {prompt!r} has no {{}} for the tag", 'e.g. --prompt "a photo of a {}"')
    return [prompt.replace("{}", t) for t in tags]


def run_zero_shot(db: Database, *, model: str, tags: Sequence[str], prompt: str, tag_vectors: np.ndarray,
                  variant: str = S.VARIANT_FULL, min_probability: float = DISAGREEMENT_MIN_PROBABILITY) -> str:
    """Tag every ``model``/``variant`` image with the best of ``tags`` (``tag_vectors``: the
    prompts' text vectors in that table's space); writes the rows, then the run. Returns its id."""
    t0 = time.perf_counter()
    data = read_embeddings(db, model, variant)
    result = zero_shot_tags(data.X, tag_vectors)
    labels, _ = image_columns(db, data.sha)
    disagree = label_disagreements(labels, tags, result, min_probability=min_probability)
    run_id = new_run_id()
    db.upsert(S.ZERO_SHOT, pa.table({
        "run_id": [run_id] * len(data.sha), "sha256": data.sha,
        "tag": [tags[i] for i in result.best],
        "probability": pa.array(result.probability, pa.float32()), "margin": pa.array(result.margin, pa.float32()),
        "label_disagreement": pa.array(disagree, pa.bool_()),
    }))
    params = {"tags": list(tags), "prompt": prompt, "logit_scale": LOGIT_SCALE,
              "disagreement_min_probability": min_probability, "label_disagreements": int(disagree.sum()),
              "seconds": round(time.perf_counter() - t0, 3)}
    write_run(db, run_id, KIND_ZERO_SHOT, model, variant, params, data.version, len(data.sha))
    return run_id
