"""HTTP basic auth for the dashboard: where the credentials come from, and a back-off on
wrong passwords.

Credentials, first found wins: ``--auth-file FILE`` (first line ``user:password``; refused
when group- or world-readable, as ssh refuses a private key), the environment variable
``EMBEDSCOPE_DASHBOARD_AUTH=user:password``. Never the command line: any local user can read
a process's arguments in ``/proc/PID/cmdline``, so ``--auth user:password`` is refused.

Back-off, per client address: after :data:`FREE_FAILURES` wrong tries the client is answered
429 (with ``Retry-After``, whatever it sends) for a lockout that doubles with every further wrong try, up to
:data:`MAX_LOCKOUT_S`; a right password resets it. Nothing sleeps in a request thread, so a
guessing client never holds up anyone else's requests.
"""

from __future__ import annotations

import hmac
import os
import stat
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embedscope.errors import ConfigError

AUTH_ENV = "EMBEDSCOPE_DASHBOARD_AUTH"
FREE_FAILURES = 5  # wrong tries before the lockout starts
FIRST_LOCKOUT_S = 2.0
MAX_LOCKOUT_S = 300.0
FORGET_AFTER_S = 3600.0  # a client quiet this long starts afresh


def parse_credentials(text: str, source: str) -> tuple[str, str]:
    """``user:password`` → (user, password); :class:`ConfigError` naming ``source`` otherwise."""
    user, sep, password = text.strip("\r\n").partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{source} must be USER:PASSWORD", "e.g. admin:$(openssl rand -hex 12)")
    return user, password


def read_auth_file(path: str | os.PathLike[str]) -> tuple[str, str]:
    """The credentials on the first line of ``path``; refused when others may read it."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        first = p.read_text(encoding="utf-8").splitlines()[:1]
    except OSError as exc:
        raise ConfigError(f"cannot read --auth-file {p}: {exc.strerror}", "give a readable file") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"--auth-file {p} is readable by other users (mode {stat.S_IMODE(mode):03o})",
                          f"chmod 600 {p}")
    return parse_credentials(first[0] if first else "", f"the first line of {p}")


def resolve_credentials(*, auth_file: str | None, environ: dict[str, str] | None = None) -> tuple[str, str] | None:
    """The credentials from ``--auth-file``, else from the environment, else None. Never from
    the command line: every local user can read a process's argv in /proc."""
    env = os.environ if environ is None else environ
    if auth_file:
        return read_auth_file(auth_file)
    if env.get(AUTH_ENV):
        return parse_credentials(env[AUTH_ENV], AUTH_ENV)
    return None


@dataclass
class _Client:
    failures: int = 0
    locked_until: float = 0.0
    last_seen: float = 0.0


@dataclass
class Backoff:
    """Wrong-password bookkeeping per client address (thread-safe, no sleeping)."""

    free_failures: int = FREE_FAILURES
    first_lockout_s: float = FIRST_LOCKOUT_S
    max_lockout_s: float = MAX_LOCKOUT_S
    _clients: dict[str, _Client] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def retry_after(self, client: str, now: float | None = None) -> float:
        """Seconds ``client`` must still wait (0: it may try)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            c = self._clients.get(client)
            return max(0.0, c.locked_until - now) if c else 0.0

    def failed(self, client: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget_quiet(now)
            c = self._clients.setdefault(client, _Client())
            c.failures += 1
            c.last_seen = now
            over = c.failures - self.free_failures  # 0 on the last free failure: the next try waits
            if over >= 0:
                c.locked_until = now + min(self.max_lockout_s, self.first_lockout_s * 2 ** over)

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)

    def _forget_quiet(self, now: float) -> None:
        if len(self._clients) > 1000:
            for key in [k for k, c in self._clients.items() if now - c.last_seen > FORGET_AFTER_S]:
                del self._clients[key]


def install_basic_auth(server: Any, credentials: tuple[str, str], backoff: Backoff | None = None) -> Backoff:
    """Require HTTP basic auth on every request of the Flask ``server``, with a back-off."""
    from flask import Response, request

    user, password = credentials
    backoff = backoff or Backoff()

    @server.before_request
    def _check() -> Response | None:
        client = request.remote_addr or "?"
        wait = backoff.retry_after(client)
        if wait > 0:
            return Response(f"too many wrong passwords: retry in {wait:.0f} s", 429,
                            {"Retry-After": str(max(1, round(wait)))})
        given = request.authorization
        ok = (given is not None and given.type == "basic"
              and hmac.compare_digest((given.username or "").encode(), user.encode())
              and hmac.compare_digest((given.password or "").encode(), password.encode()))
        if ok:
            backoff.succeeded(client)
            return None
        if given is not None:  # a browser's first, credential-less request is no failure
            backoff.failed(client)
        return Response("authentication required", 401, {"WWW-Authenticate": 'Basic realm="embedscope"'})

    return backoff
