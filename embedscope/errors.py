"""Domain exceptions.

Every error a user can cause or fix is an :class:`EmbedscopeError` carrying a one-line
message (what went wrong) and a hint (how to fix it). The CLI prints both on one line and
exits non-zero; library callers can catch the specific subclasses.
"""

from __future__ import annotations


class EmbedscopeError(Exception):
    """Base class: ``message`` says what went wrong, ``hint`` how to fix it."""

    exit_code = 2

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.message} — {self.hint}" if self.hint else self.message


class ConfigError(EmbedscopeError):
    """A setting is missing, unknown or out of range."""


class UnknownModelError(ConfigError):
    """A model name that is not in the encoder registry."""


class WeightsNotFoundError(EmbedscopeError):
    """Pretrained weights were asked for but cannot be loaded (offline, no cache, bad file)."""


class DependencyError(EmbedscopeError):
    """An optional heavy dependency is not installed."""


class DatabaseError(EmbedscopeError):
    """The database is missing, unreadable, or does not hold what was asked for."""


class DatabaseLockedError(DatabaseError):
    """Another writer (ingest or watch) holds the database's writer lock."""

    exit_code = 3


class DecodeError(EmbedscopeError):
    """A file cannot be turned into an image; the pipeline quarantines it with this reason."""


class QueryError(EmbedscopeError):
    """A SQL query was refused (not read-only) or failed."""


class NotFoundError(EmbedscopeError):
    """An image, run or table that was named does not exist."""
