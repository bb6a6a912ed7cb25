"""Run ``embedscope`` CLI commands in this process, reporting each as soon as it ends.

``python -m benchmarks._child COMMANDS_JSON``: ``COMMANDS_JSON`` is a JSON list of argument
lists; for each, the command's own stdout is kept apart and one line goes to the real
stdout, :data:`MARK` then JSON ``{"rc", "summary" (the command's last stdout line, parsed), "wall_s", "max_rss_mib"}``
(peak RSS of this process so far). The ingest benchmark runs each command in a fresh process
(one command per child) so its peak memory is its own, or, in the quick tier, all of them in
one child, so torch starts once.
"""

from __future__ import annotations

import contextlib
import io
import json
import resource
import sys
import time


MARK = "@bench-child "  # starts each report line: anything else a library writes to fd 1 is skipped


def main() -> int:
    commands = json.loads(sys.argv[1])
    out = sys.stdout
    for argv in commands:
        t0 = time.monotonic()
        from embedscope.cli import main as cli_main  # timed: the first command pays the imports

        captured = io.StringIO()
        with contextlib.redirect_stdout(captured):
            code = cli_main(argv)
        lines = captured.getvalue().strip().splitlines()
        try:
            summary = json.loads(lines[-1]) if lines else None
        except ValueError:
            summary = None
        out.write(MARK + json.dumps({"rc": code, "summary": summary, "wall_s": time.monotonic() - t0,
                              "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")
        out.flush()
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
