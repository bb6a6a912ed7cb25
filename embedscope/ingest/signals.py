"""How a long-running process stops: the first SIGTERM/SIGINT asks it to finish its batch,
a second one exits at once (safe too: the unfinished batch is redone on the next start)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

log = logging.getLogger("embedscope.watch")


def install_stop_handlers(stop: threading.Event) -> None:
    """SIGTERM/SIGINT set ``stop`` (finish the batch, exit 0); a second one exits at once."""

    def handler(signum: int, _frame: Any) -> None:
        if stop.is_set():
            log.warning("second %s: exiting now (the unfinished batch is redone on the next start)",
                        signal.Signals(signum).name)
            logging.shutdown()
            os._exit(130)
        log.info("%s: finishing the current batch, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
