"""Run the ``embedscope`` CLI in this process, then report its peak RSS.

``python -m benchmarks._child RSS_FILE embedscope-args...``: the benchmark runs each
ingest in a fresh process like this so peak memory (``ru_maxrss``) is the ingest's own.
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    t0 = time.monotonic()
    from embedscope.cli import main as cli_main

    code = cli_main(argv)
    with open(out, "w") as fh:
        json.dump({"rc": code, "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "wall_s": time.monotonic() - t0}, fh)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
