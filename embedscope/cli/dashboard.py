"""`dashboard`: serve the Dash app for a database (waitress, a production WSGI server)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedscope.cli.common import add_db, add_query_embedding_options, storage_options
from embedscope.cli.query import add_sql_limits, sql_limits


def cmd_dashboard(args: argparse.Namespace) -> int:
    from embedscope.dashboard.app import create_app, is_loopback, serve
    from embedscope.dashboard.auth import AUTH_ENV, resolve_credentials
    from embedscope.errors import ConfigError

    if args.auth is not None:
        raise ConfigError("--auth USER:PASSWORD would show the password to every local user (in /proc)",
                          f"put USER:PASSWORD in a mode-600 file for --auth-file FILE, or set {AUTH_ENV}")
    credentials = resolve_credentials(auth_file=args.auth_file)
    if not credentials and not is_loopback(args.host):
        raise ConfigError(f"refusing to serve the dashboard on {args.host} without auth (it is not a loopback address)",
                          f"set {AUTH_ENV}=USER:PASSWORD or pass --auth-file FILE, or keep the default --host 127.0.0.1")
    query_flags = {"image_size": args.image_size, "preprocess": args.preprocess, "device": args.device,
                   "weights": args.weights}
    if args.config:  # a bad config file fails now, not at the first upload
        from embedscope.config import IngestSettings, load_settings

        load_settings(IngestSettings, {}, section="ingest", config_file=args.config)
    for name in ("threads", "max_original_mb", "max_upload_mpx", "max_body_mb"):
        if getattr(args, name) <= 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0", "leave it out for the default")
    app = create_app(args.db, auth=credentials, max_points=args.max_points, query_flags=query_flags, host=args.host,
                     query_config=args.config, storage_options=storage_options(args),
                     sql_limits=sql_limits(args, prefix="sql-"), max_original_bytes=int(args.max_original_mb * 2**20),
                     max_upload_pixels=int(args.max_upload_mpx * 1e6), max_body_bytes=int(args.max_body_mb * 2**20),
                     plotly=args.plotly)
    where = f"http://{args.host}:{args.port}/"
    print(f"embedscope dashboard: serving {args.db} read-only at {where}"
          f"{' (basic auth required)' if credentials else ''} — Ctrl-C to stop", file=sys.stderr)
    serve(app, host=args.host, port=args.port, threads=args.threads)
    return 0


def register(sub: Any) -> None:
    from embedscope.dashboard import context as D
    from embedscope.dashboard.app import DEFAULT_THREADS

    p = sub.add_parser("dashboard", help="serve the Dash dashboard for a database (read-only)")
    add_db(p)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; a name or address that is not loopback needs auth)")
    p.add_argument("--port", type=int, default=8050, help="default 8050")
    p.add_argument("--auth-file", metavar="FILE",
                   help="require HTTP basic auth: USER:PASSWORD on the first line of FILE (mode 600); "
                        "or set EMBEDSCOPE_DASHBOARD_AUTH=USER:PASSWORD")
    p.add_argument("--auth", help=argparse.SUPPRESS)  # refused with a pointer to --auth-file: argv is public
    p.add_argument("--threads", type=int, default=DEFAULT_THREADS, help=f"server worker threads (default {DEFAULT_THREADS})")
    p.add_argument("--max-points", type=int, default=D.DEFAULT_MAX_POINTS,
                   help=f"a 2-D map draws points up to this many in view, a density image beyond; a 3-D map a "
                        f"random sample of this many (default {D.DEFAULT_MAX_POINTS})")
    p.add_argument("--max-original-mb", type=float, default=D.DEFAULT_MAX_ORIGINAL_BYTES / 2**20,
                   help="/image serves an original file up to this many MiB, else its thumbnail (default %(default)g)")
    p.add_argument("--max-upload-mpx", type=float, default=D.DEFAULT_MAX_UPLOAD_PIXELS / 1e6,
                   help="the Search page refuses uploads of more megapixels (default %(default)g)")
    p.add_argument("--max-body-mb", type=float, default=D.DEFAULT_MAX_BODY_BYTES / 2**20,
                   help="larger request bodies (MiB) are refused with 413 before they are read (default %(default)g)")
    p.add_argument("--plotly", choices=("trimmed", "full"), default="trimmed",
                   help="plotly.js for the pages: trimmed to the dashboard's trace types (default; 2.1 MB, starts "
                        "~1.3 s sooner) or plotly.py's full bundle (4.8 MB)")
    add_sql_limits(p, prefix="sql-")
    add_query_embedding_options(p, "embedding an uploaded image on the Search page (match the ingest, as for `similar`)")
    p.set_defaults(handler=cmd_dashboard)
