"""Drops: every checked drop (newest first) with its paths per verdict; a drop opens its
galleries, one per verdict, a duplicate beside the earlier image it duplicates with the cosine
and phash distances and the rule (docs/verdicts.md). Every view is a URL keyed by row ids:
``/drops?older=<drop id>`` pages the list (a cursor: drops a running ``watch`` adds do not shift
it), ``/drops?drop=<id>&verdict=<v>&page=<n>`` one gallery page; ``per=<n>`` sets the page size
(drops, or images)."""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from embedscope.dashboard import components as C
from embedscope.dashboard import context
from embedscope.dashboard import drops_view as V

DROPS_PER_PAGE = 20
IMAGES_PER_PAGE = 48
MAX_PER_PAGE = 500


def layout(drop: str | None = None, verdict: str | None = None, page: str | None = None, older: str | None = None,
           per: str | None = None, **_: Any) -> Any:
    from embedscope.errors import EmbedscopeError

    db = context.current().db()
    try:
        if drop:
            return _drop_view(db, drop, verdict, _number("page", page, 0, 0), _number("per", per, IMAGES_PER_PAGE, 1))
        return _list_view(db, older, _number("per", per, DROPS_PER_PAGE, 1))
    except EmbedscopeError as exc:  # an unknown drop id or cursor, a bad verdict or page
        return C.message_page("Drops", exc.one_line(), kind="error")


def _list_view(db: Any, older: str | None, per: int) -> Any:
    from embedscope.analysis.verdicts import VERDICTS
    from embedscope.store.drops import drops_page

    drops, more = drops_page(db, older_than=older, limit=per)
    if not drops and not older:
        return C.message_page("Drops", "No checked drops yet: ingest a drop (verdicts are on by default) "
                              "or run `embedscope verdicts`.")
    text = f"{len(drops)} drop(s)" + (f" older than {older}" if older else ", newest first")
    return html.Div([
        html.H3("Drops"),
        V.drops_table(drops, VERDICTS),
        V.pager(V.href(per=_given(per, DROPS_PER_PAGE)) if older else None,
                V.href(older=drops[-1]["drop_id"], per=_given(per, DROPS_PER_PAGE)) if more and drops else None,
                text, prev="← newest"),
    ])


def _drop_view(db: Any, drop_id: str, verdict: str | None, page: int, per: int) -> Any:
    from embedscope.analysis.drop_report import REPORT_ORDER
    from embedscope.errors import ConfigError
    from embedscope.store import schema as S
    from embedscope.store.drops import drop_or_latest, verdict_gallery
    from embedscope.store.filters import isin

    d = drop_or_latest(db, drop_id)
    counts = d["counts"]
    if verdict is None:
        verdict = next((v for v in REPORT_ORDER if counts.get(v)), REPORT_ORDER[-1])
    if verdict not in REPORT_ORDER:
        raise ConfigError(f"no verdict {verdict!r}", f"verdicts: {', '.join(REPORT_ORDER)}")
    rows, total = verdict_gallery(db, d["drop_id"], verdict, page=page, per_page=per)
    shas = {s for r in rows for s in (r["sha256"], r["partner_sha256"]) if s}
    known = set(db.read(S.IMAGES, ["sha256"], where=isin("sha256", sorted(shas))).column("sha256").to_pylist())
    pages = max(1, -(-total // per))
    first = page * per
    text = f"{verdict}: {first + 1 if rows else 0}–{first + len(rows)} of {total:,} (page {page + 1} of {pages})"
    at = {"drop": d["drop_id"], "verdict": verdict, "per": _given(per, IMAGES_PER_PAGE)}
    return html.Div([
        dcc.Link("← all drops", href=V.href(), style={"fontSize": "13px"}),
        html.H3(f"Drop {d['drop_id']}"),
        V.drop_summary(d),
        V.verdict_tabs(d["drop_id"], counts, REPORT_ORDER, verdict),
        V.pager(V.href(**at, page=page - 1) if page > 0 else None,
                V.href(**at, page=page + 1) if page + 1 < pages else None, text, prev="← previous", next="next →"),
        V.verdict_gallery(rows, verdict, known),
    ])


def _number(name: str, text: str | None, default: int, least: int) -> int:
    """A page number or size from the URL, checked: one line on the page if it is bad."""
    from embedscope.errors import ConfigError

    if text in (None, ""):
        return default
    try:
        n = int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number") from None
    most = MAX_PER_PAGE if name == "per" else n
    if not least <= n <= most:
        raise ConfigError(f"{name}={text!r} is out of range", f"{name} runs from {least}"
                          + (f" to {most}" if name == "per" else " up"))
    return n


def _given(per: int, default: int) -> int | None:
    """``per`` for a link: left out when it is the default."""
    return None if per == default else per


def register_callbacks(app: Any, ctx: Any) -> None:
    """Nothing to wire: every view is a URL (links re-render the layout)."""
