"""`dashboard`: serve the Dash app for a database."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from embedscope.cli.common import add_db, add_query_embedding_options, storage_options


def cmd_dashboard(args: argparse.Namespace) -> int:
    from embedscope.dashboard.app import create_app, is_loopback
    from embedscope.errors import ConfigError

    if args.auth is not None and (":" not in args.auth or not args.auth.split(":", 1)[0] or not args.auth.split(":", 1)[1]):
        raise ConfigError("--auth must be USER:PASSWORD", "e.g. --auth admin:$(openssl rand -hex 12)")
    if not is_loopback(args.host) and not args.auth:
        raise ConfigError(f"refusing to serve the dashboard on {args.host} without --auth",
                          "add --auth USER:PASSWORD (HTTP basic auth), or keep the default --host 127.0.0.1")
    query_flags = {"image_size": args.image_size, "preprocess": args.preprocess, "device": args.device,
                   "weights": args.weights}
    if args.config:  # a bad config file fails now, not at the first upload
        from embedscope.config import IngestSettings, load_settings

        load_settings(IngestSettings, {}, section="ingest", config_file=args.config)
    app = create_app(args.db, auth=args.auth, max_points=args.max_points, query_flags=query_flags,
                     query_config=args.config, storage_options=storage_options(args))
    where = f"http://{args.host}:{args.port}/"
    print(f"embedscope dashboard: serving {args.db} read-only at {where}"
          f"{' (basic auth required)' if args.auth else ''} — Ctrl-C to stop", file=sys.stderr)
    app.run(host=args.host, port=args.port, debug=False)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("dashboard", help="serve the Dash dashboard for a database (read-only)")
    add_db(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; anything else needs --auth)")
    p.add_argument("--port", type=int, default=8050, help="default 8050")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require HTTP basic auth (mandatory off loopback)")
    p.add_argument("--max-points", type=int, default=150_000,
                   help="the map shows a fixed random sample beyond this many points (default 150000)")
    add_query_embedding_options(p, "embedding an uploaded image on the Search page (match the ingest, as for `similar`)")
    p.set_defaults(handler=cmd_dashboard)
