"""What several command groups share: the database options, output formats, help defaults."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from typing import Any

from embedscope.errors import ConfigError


def default_of(settings_cls: Any, name: str) -> Any:
    """The default of field ``name`` of a settings dataclass (one place for every default)."""
    for f in dataclasses.fields(settings_cls):
        if f.name == name:
            if f.default is not dataclasses.MISSING:
                return f.default
            if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
                return f.default_factory()  # type: ignore[misc]
    raise KeyError(f"{settings_cls.__name__} has no field {name!r}")


def with_default(text: str, settings_cls: Any, name: str, shown: Any = None) -> str:
    """``text`` plus "(default X)", X read from the settings dataclass, so help never drifts."""
    value = default_of(settings_cls, name) if shown is None else shown
    if isinstance(value, tuple):
        value = ",".join(str(v) for v in value)
    return f"{text} (default {value})" if text else f"default {value}"


def add_db(p: argparse.ArgumentParser) -> None:
    p.add_argument("--db", required=True, metavar="DIR", help="database folder (or object-store URI, e.g. s3://bucket/prefix)")
    p.add_argument("--storage-option", action="append", metavar="KEY=VALUE",
                   help="object-store setting in LanceDB's names (repeatable), e.g. aws_endpoint=http://HOST:9000; "
                        "on top of AWS_* and EMBEDSCOPE_STORAGE_OPTIONS (also used for s3:// drops)")


def storage_options(args: argparse.Namespace) -> dict[str, str]:
    """EMBEDSCOPE_STORAGE_OPTIONS, then --storage-option on top (per key)."""
    from embedscope.objectstore import options_from_env, parse_options

    return {**options_from_env(os.environ), **parse_options(getattr(args, "storage_option", None))}


def open_db(args: argparse.Namespace, *, create: bool = False) -> Any:
    from embedscope.store.db import Database

    return Database(args.db, create=create, storage_options=storage_options(args))


def add_wait_lock(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait-lock", type=float, default=0.0, metavar="SECONDS",
                   help="if another process is writing the database, wait this long for it")


def add_query_embedding_options(p: argparse.ArgumentParser, title: str) -> None:
    """How to embed a query image the way the stored embeddings were made (`similar`, `dashboard`)."""
    from embedscope.config import IngestSettings

    g = p.add_argument_group(title)
    g.add_argument("--weights", help="default: what the table records (random, hub); a file needs PATH")
    g.add_argument("--image-size", type=int, help=with_default("model input side used at ingest; 0 = the model's own", IngestSettings, "image_size"))
    g.add_argument("--preprocess", choices=["default", "xray"])
    g.add_argument("--device", choices=["auto", "cpu", "cuda"])
    g.add_argument("--config", metavar="FILE", help="TOML file with an [ingest] section")


def add_output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["table", "csv", "json", "parquet"],
                   help="default: from --out's extension, else table on a terminal and csv in a pipe")
    p.add_argument("--out", metavar="FILE", help="write the result to FILE instead of stdout")


def emit(table: Any, args: argparse.Namespace, *, note: str = "") -> None:
    """Write a result table as --format/--out say; a note about it goes to stderr."""
    from embedscope.formats import choose_format, write_result

    fmt = choose_format(args.format, args.out, isatty=sys.stdout.isatty())
    write_result(table, fmt, args.out)
    if args.out:
        print(f"wrote {table.num_rows} rows to {args.out} ({fmt}){note}", file=sys.stderr)
    elif note:
        print(f"{table.num_rows} rows{note}", file=sys.stderr)


def csv_list(value: str) -> tuple[str, ...]:
    """``"a, b,none"`` → ``("a", "b")``."""
    return tuple(v.strip() for v in value.split(",") if v.strip() and v.strip() != "none")


def int_list(value: str, flag: str, example: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in csv_list(value))
    except ValueError:
        raise ConfigError(f"{flag} {value!r} is not a list of numbers", f"use e.g. {flag} {example}") from None
