"""Writing a query result (an Arrow table) as an aligned text table, CSV, JSON or Parquet."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import sys
from pathlib import Path
from typing import IO, Any

import pyarrow as pa

from embedscope.errors import ConfigError

FORMATS = ("table", "csv", "json", "parquet")
_MAX_CELL = 100


def choose_format(requested: str | None, out: str | None, *, isatty: bool) -> str:
    """``--format`` if given; else from ``--out``'s extension; else ``table`` on a terminal, ``csv`` in a pipe."""
    if requested:
        return requested
    if out:
        ext = Path(out).suffix.lower().lstrip(".")
        if ext in FORMATS and ext != "table":
            return ext
        return "table" if ext in ("txt", "") else "csv"
    return "table" if isatty else "csv"


def write_result(table: pa.Table, fmt: str, out: str | None) -> None:
    """Write ``table`` to ``out`` (a path) or stdout."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}", f"one of: {', '.join(FORMATS)}")
    if fmt == "parquet":
        if not out:
            raise ConfigError("--format parquet needs --out FILE", "parquet is binary; write it to a file")
        import pyarrow.parquet as pq

        pq.write_table(table, out)
        return
    text = {"table": render_table, "csv": render_csv, "json": render_json}[fmt](table)
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        _write(sys.stdout, text)


def render_table(table: pa.Table) -> str:
    """An aligned text table: header, rule, one line per row; long cells shortened."""
    names = table.column_names
    rows = [[_cell(v) for v in row.values()] for row in table.to_pylist()]
    widths = [max([len(n)] + [len(r[i]) for r in rows]) for i, n in enumerate(names)]
    numeric = [pa.types.is_integer(f.type) or pa.types.is_floating(f.type) for f in table.schema]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in zip(cells, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)]
    out.extend(line(r) for r in rows)
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''})")
    return "\n".join(out) + "\n"


def render_csv(table: pa.Table) -> str:
    import csv

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(table.column_names)
    for row in table.to_pylist():
        writer.writerow([_plain(v) for v in row.values()])
    return buf.getvalue()


def render_json(table: pa.Table) -> str:
    """A JSON array of row objects; bytes as base64, timestamps as ISO 8601."""
    return json.dumps(table.to_pylist(), default=_json_default, ensure_ascii=False) + "\n"


def _json_default(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    return str(value)


def _plain(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (list, dict)):
        return json.dumps(value, default=_json_default)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, (bytes, bytearray)):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        head = ", ".join(_cell(v) for v in value[:3])
        text = f"[{head}{', …' if len(value) > 3 else ''}] ({len(value)})" if len(value) > 3 else f"[{head}]"
    elif isinstance(value, dt.datetime):
        text = value.isoformat(sep=" ", timespec="seconds")
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= _MAX_CELL else text[: _MAX_CELL - 1] + "…"


def _write(stream: IO[str], text: str) -> None:
    try:
        stream.write(text)
        stream.flush()
    except BrokenPipeError:  # `embedscope query ... | head`
        pass
