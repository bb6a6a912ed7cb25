"""Export the curated dataset: the kept images (label after ``relabel:`` tags, every source
path) and the excluded ones, each with its reason.

Lives in ``store`` because it only reads tables (through the read-only SQL views and
:mod:`embedscope.store.runs`) and writes files; it computes nothing, so it needs neither
``analysis`` nor ``models``, and both the CLI and the dashboard call it.

Why an image is left out (one row per reason in the excluded list):

- ``tag:<name>``: it carries one of ``exclude_tags`` (detail: the tag's note);
- ``flag:<flag>``: one of ``exclude_flags`` (:data:`FLAGS`), read by
  :mod:`embedscope.store.exclusions` (analyze's flags, the ``pairs`` and ``arrivals`` tables).

A ``keep`` tag overrides the flags (never the tags). Formats: ``csv`` / ``parquet`` (two
files), ``imagefolder`` (``DIR/<label>/<file>`` hard links, copies across file systems, plus
the two lists as CSV).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa

from embedscope.errors import ConfigError
from embedscope.store import schema as S
from embedscope.store.db import Database
from embedscope.store.filters import isin
from embedscope.store.exclusions import FLAGS, FlagReasons
from embedscope.store.tags import EXCLUDE, KEEP, relabel_target

FORMATS = ("csv", "parquet", "imagefolder")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
KEPT_COLUMNS = ("sha256", "label", "original_label", "path", "paths", "n_paths", "tags")
EXCLUDED_COLUMNS = ("sha256", "label", "path", "paths", "reason", "detail", "score", "group", "partner",
                    "distance", "hamming")


@dataclass
class ExportResult:
    """What an export wrote: the two lists' files and their row counts."""

    kept_file: Path
    excluded_file: Path
    n_kept: int
    n_excluded_images: int
    n_linked: int = 0
    n_copied: int = 0
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        out = f"{self.n_kept} kept -> {self.kept_file}; {self.n_excluded_images} excluded -> {self.excluded_file}"
        if self.n_linked or self.n_copied:
            out += f"; {self.n_linked} hard links, {self.n_copied} copies"
        return out


def check_flags(flags: Sequence[str]) -> list[str]:
    """``flags`` validated against :data:`FLAGS`."""
    bad = [f for f in flags if f not in FLAGS]
    if bad:
        raise ConfigError(f"unknown flag {bad[0]!r}", f"one of: {', '.join(FLAGS)}")
    return list(flags)


def export(db: Database, out: str | os.PathLike[str], *, fmt: str = "csv", exclude_tags: Sequence[str] = (EXCLUDE,),
           exclude_flags: Sequence[str] = (), where: str | None = None) -> ExportResult:
    """Write the kept and excluded lists (and for ``imagefolder`` the images) to ``out``.

    ``out`` is a folder (``kept.<ext>`` and ``excluded.<ext>`` in it) or, for csv/parquet, a
    file (the excluded list next to it as ``<stem>.excluded.<ext>``). ``where`` (SQL over
    ``images_latest``) limits which images are considered at all."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}", f"one of: {', '.join(FORMATS)}")
    kept, excluded = curated_lists(db, exclude_tags=exclude_tags, exclude_flags=check_flags(exclude_flags),
                                   where=where)
    kept_file, excluded_file = _targets(Path(out), fmt)
    result = ExportResult(kept_file, excluded_file, kept.num_rows,
                          len(set(excluded.column("sha256").to_pylist())))
    if fmt == "imagefolder":
        kept, result.n_linked, result.n_copied = _link_images(kept, Path(out))
    _write(kept, kept_file, fmt)
    _write(excluded, excluded_file, fmt)
    return result


def curated_lists(db: Database, *, exclude_tags: Sequence[str] = (EXCLUDE,), exclude_flags: Sequence[str] = (),
                  where: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(kept, excluded) as Arrow tables (:data:`KEPT_COLUMNS`, :data:`EXCLUDED_COLUMNS`);
    ``paths`` is a list of every path in ``sources``."""
    from embedscope.store.sql import run_sql

    images = run_sql(db, "SELECT sha256, label, path, ingested_at, tags FROM images_latest"
                         + (f" WHERE {where}" if where else "") + " ORDER BY sha256", limit=None).to_pylist()
    shas = [r["sha256"] for r in images]
    paths = _paths_by_sha(db, shas)
    current = _current_tags(db, shas)
    flags = FlagReasons(db, images, exclude_flags, exclude_tags)
    kept_rows, excluded_rows = [], []
    for img in images:
        sha, tags = img["sha256"], list(img["tags"] or [])
        all_paths = paths.get(sha) or [img["path"]]
        # (a tag written between the two reads has no row: it sorts first, its note is empty)
        relabels = sorted((current.get((sha, t), {}).get("tagged_at") or _EPOCH, relabel_target(t))
                          for t in tags if relabel_target(t))
        label = relabels[-1][1] if relabels else img["label"]  # the latest relabel: tag wins
        reasons = [{"reason": f"tag:{t}", "detail": current.get((sha, t), {}).get("note")} for t in exclude_tags if t in tags]
        if KEEP not in tags:
            reasons += flags.of(sha)
        base = {"sha256": sha, "label": label, "path": all_paths[0], "paths": all_paths}
        if reasons:
            excluded_rows += [{**base, **dict.fromkeys(_REASON_FIELDS), **r} for r in reasons]
        else:
            kept_rows.append({**base, "original_label": img["label"], "n_paths": len(all_paths), "tags": tags})
    kept = pa.Table.from_pylist(kept_rows, schema=_KEPT_SCHEMA)
    excluded = pa.Table.from_pylist(excluded_rows, schema=_EXCLUDED_SCHEMA)
    return kept, excluded


_KEPT_SCHEMA = pa.schema([("sha256", pa.string()), ("label", pa.string()), ("original_label", pa.string()),
                          ("path", pa.string()), ("paths", pa.list_(pa.string())), ("n_paths", pa.int64()),
                          ("tags", pa.list_(pa.string()))])
_EXCLUDED_SCHEMA = pa.schema([("sha256", pa.string()), ("label", pa.string()), ("path", pa.string()),
                              ("paths", pa.list_(pa.string())), ("reason", pa.string()), ("detail", pa.string()),
                              ("score", pa.float64()), ("group", pa.int64()), ("partner", pa.string()),
                              ("distance", pa.float64()), ("hamming", pa.int64())])
_REASON_FIELDS = ("score", "group", "partner", "distance", "hamming")


def _paths_by_sha(db: Database, shas: list[str]) -> dict[str, list[str]]:
    """Every ``sources`` path per sha256, oldest sighting first."""
    out: dict[str, list[str]] = {}
    for start in range(0, len(shas), 5000):
        rows = db.read(S.SOURCES, ["sha256", "path", "seen_at"], where=isin("sha256", shas[start:start + 5000]))
        for r in sorted(rows.to_pylist(), key=lambda r: (r["seen_at"] is None, r["seen_at"], r["path"])):
            out.setdefault(r["sha256"], []).append(r["path"])
    return out


def _current_tags(db: Database, shas: list[str]) -> dict[tuple[str, str], dict[str, Any]]:
    """(sha256, tag) → its ``image_tags`` row (note, tagged_at)."""
    from embedscope.store.tags import current_tags

    wanted = set(shas)
    return {(r["sha256"], r["tag"]): r for r in current_tags(db).to_pylist() if r["sha256"] in wanted}


# -- writing ------------------------------------------------------------------------------------


def _targets(out: Path, fmt: str) -> tuple[Path, Path]:
    ext = "csv" if fmt == "imagefolder" else fmt
    if fmt != "imagefolder" and out.suffix.lower() == f".{ext}":
        out.parent.mkdir(parents=True, exist_ok=True)
        return out, out.with_name(f"{out.stem}.excluded.{ext}")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out} is a file", f"give a folder (or a .{ext} file for --format {ext})")
    out.mkdir(parents=True, exist_ok=True)
    return out / f"kept.{ext}", out / f"excluded.{ext}"


def _write(table: pa.Table, path: Path, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, path)
        return
    import pyarrow.csv as pcsv

    # CSV has no lists: list columns become JSON arrays (unambiguous whatever the paths contain)
    cols = {n: ([json.dumps(v) for v in table.column(n).to_pylist()] if pa.types.is_list(table.schema.field(n).type)
                else table.column(n)) for n in table.column_names}
    pcsv.write_csv(pa.table(cols), path)


def _link_images(kept: pa.Table, root: Path) -> tuple[pa.Table, int, int]:
    """Hard-link each kept image as ``root/<label>/<file name>`` (a copy across file systems;
    a clashing name gets the sha256's first 12 characters); the table gains ``exported_path``."""
    from embedscope.objectstore import is_uri

    linked = copied = 0
    taken: set[Path] = set()
    exported = []
    for row in kept.to_pylist():
        source = next((p for p in row["paths"] if not is_uri(p) and Path(p).is_file()), None)
        if source is None:
            raise ConfigError(f"no local file for {row['sha256']} (paths: {row['paths'][:3]})",
                              "imagefolder needs the originals on this machine; use --format csv")
        folder = root / _safe_name(row["label"] or "unlabelled")
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / Path(source).name
        if target in taken or target.exists():
            target = folder / f"{Path(source).stem}_{row['sha256'][:12]}{Path(source).suffix}"
        taken.add(target)
        try:
            os.link(source, target)
            linked += 1
        except OSError:
            shutil.copy2(source, target)
            copied += 1
        exported.append(str(target))
    return kept.append_column("exported_path", pa.array(exported, pa.string())), linked, copied


def _safe_name(label: str) -> str:
    name = "".join(c if c.isalnum() or c in "-_. " else "_" for c in label).strip(" .")
    return name or "unlabelled"
