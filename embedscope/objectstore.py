"""Object-store URIs (``s3://bucket/prefix``, ``gs://``, ``az://``) for databases and drops.

The one module that knows how to reach an object store outside LanceDB:

- **storage options** are key/value settings in LanceDB's vocabulary (``aws_endpoint``,
  ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_region``, ``allow_http``, ...).
  :func:`resolve_options` builds them for a URI from the usual ``AWS_*`` environment variables,
  then applies explicit ones (``--storage-option k=v``, ``EMBEDSCOPE_STORAGE_OPTIONS``) on top.
  The same resolved options go to LanceDB (the database) and to ``pyarrow.fs`` (the drops), so
  both always talk to the same endpoint with the same credentials.
- **drops**: :func:`list_objects`, :func:`open_input` and :func:`read_bytes` read objects through
  ``pyarrow.fs`` (S3, GCS, Azure), by URI.
- **errors**: :func:`store_error` turns what LanceDB / Arrow raise (long Rust or AWS SDK dumps)
  into one line with a hint.

Nothing here runs at import; ``pyarrow.fs`` is imported when a store is first used.

>>> resolve_options("s3://bucket/db", {"endpoint": "http://127.0.0.1:9000"}, environ={})
{'aws_endpoint': 'http://127.0.0.1:9000', 'allow_http': 'true'}
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from embedscope.errors import ConfigError, DatabaseError, EmbedscopeError

ENV_OPTIONS = "EMBEDSCOPE_STORAGE_OPTIONS"

# environment variable → storage option, first match wins (AWS SDK conventions)
_S3_ENV: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("aws_access_key_id", ("AWS_ACCESS_KEY_ID",)),
    ("aws_secret_access_key", ("AWS_SECRET_ACCESS_KEY",)),
    ("aws_session_token", ("AWS_SESSION_TOKEN",)),
    ("aws_region", ("AWS_REGION", "AWS_DEFAULT_REGION")),
    ("aws_endpoint", ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")),
    ("allow_http", ("AWS_ALLOW_HTTP",)),
)
# spellings LanceDB / object_store also accept → the one we use
_S3_ALIASES = {
    "access_key_id": "aws_access_key_id",
    "secret_access_key": "aws_secret_access_key",
    "session_token": "aws_session_token",
    "aws_token": "aws_session_token",
    "token": "aws_session_token",
    "region": "aws_region",
    "aws_default_region": "aws_region",
    "endpoint": "aws_endpoint",
    "endpoint_url": "aws_endpoint",
    "aws_endpoint_url": "aws_endpoint",
    "aws_endpoint_url_s3": "aws_endpoint",
    "aws_allow_http": "allow_http",
}
_SECRET_KEYS = ("secret", "token", "password", "key_id", "account_key", "sas")


def is_uri(path: Any) -> bool:
    """True for an object-store URI (``s3://...``); False for local paths and ``file://``."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def scheme(uri: str) -> str:
    return str(uri).split("://", 1)[0].lower()


def parse_options(items: Iterable[str] | None) -> dict[str, str]:
    """``["k=v", ...]`` → ``{"k": "v"}`` (later items win). Raises :class:`ConfigError`."""
    out: dict[str, str] = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"storage option {item!r} is not KEY=VALUE",
                              "e.g. --storage-option aws_endpoint=http://127.0.0.1:9000")
        out[key] = value.strip()
    return out


def options_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """``EMBEDSCOPE_STORAGE_OPTIONS="k=v,k2=v2"`` (commas or whitespace between items)."""
    raw = environ.get(ENV_OPTIONS, "")
    return parse_options(p for p in re.split(r"[,\s]+", raw) if p)


def as_items(options: Mapping[str, str] | Iterable[str] | None) -> tuple[str, ...]:
    """Options as sorted ``"k=v"`` strings (hashable, for frozen settings)."""
    if options is None:
        return ()
    if isinstance(options, Mapping):
        return tuple(f"{k}={v}" for k, v in sorted(options.items()))
    return tuple(sorted(f"{k}={v}" for k, v in parse_options(options).items()))


def resolve_options(
    uri: str,
    explicit: Mapping[str, str] | Iterable[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The storage options to reach ``uri``: from the environment, then ``explicit`` on top.

    For ``s3://`` the ``AWS_*`` variables are read (credentials, ``AWS_REGION`` /
    ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` for S3-compatible
    servers) and an ``http://`` endpoint implies ``allow_http``. Other schemes get ``explicit``
    only (LanceDB and Arrow read their own environment for those).
    """
    import os

    environ = os.environ if environ is None else environ
    given = dict(explicit) if isinstance(explicit, Mapping) else parse_options(explicit)
    if scheme(uri) not in ("s3", "s3a", "s3+ddb"):
        return given
    given = {_S3_ALIASES.get(k.lower(), k.lower()): v for k, v in given.items()}
    out: dict[str, str] = {}
    for key, names in _S3_ENV:
        for name in names:
            if environ.get(name):
                out[key] = environ[name]
                break
    if "aws_access_key_id" in given and "aws_session_token" not in given:
        out.pop("aws_session_token", None)  # a session token belongs to the environment's key
    out.update(given)
    if out.get("aws_endpoint", "").startswith("http://") and "allow_http" not in out:
        out["allow_http"] = "true"
    return out


def redact(options: Mapping[str, str]) -> dict[str, str]:
    """Options safe to print: secrets replaced by ``***``."""
    return {k: ("***" if any(s in k.lower() for s in _SECRET_KEYS) and "access_key_id" not in k else v)
            for k, v in options.items()}


# -- reading objects (drops) ----------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    uri: str
    size: int
    mtime: dt.datetime  # UTC


def filesystem(uri: str, options: Mapping[str, str] | None = None) -> tuple[Any, str]:
    """``(pyarrow.fs.FileSystem, path inside it)`` for ``uri``, built from resolved options."""
    from pyarrow import fs

    kind = scheme(uri)
    path = str(uri).split("://", 1)[1]
    if kind in ("s3", "s3a"):
        o = resolve_options(uri, options)
        kw: dict[str, Any] = {"retry_strategy": fs.AwsStandardS3RetryStrategy(max_attempts=3),
                              "connect_timeout": 5.0}
        if o.get("aws_access_key_id"):
            kw["access_key"] = o["aws_access_key_id"]
            kw["secret_key"] = o.get("aws_secret_access_key", "")
            if o.get("aws_session_token"):
                kw["session_token"] = o["aws_session_token"]
        if o.get("aws_region"):
            kw["region"] = o["aws_region"]
        endpoint = o.get("aws_endpoint")
        if endpoint:
            parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            kw["scheme"] = parts.scheme
            kw["endpoint_override"] = parts.netloc + parts.path.rstrip("/")
        if o.get("aws_virtual_hosted_style_request", "").lower() in ("1", "true", "yes"):
            kw["force_virtual_addressing"] = True
        return fs.S3FileSystem(**kw), path
    try:
        return fs.FileSystem.from_uri(str(uri))
    except (ValueError, OSError) as exc:
        raise store_error(uri, exc, what="drop") from None


def list_objects(uri: str, options: Mapping[str, str] | None = None) -> list[ObjectInfo]:
    """Every object under the prefix ``uri`` (or the object itself), sorted by URI.

    A prefix with no objects under it is an empty list (object stores have no folders);
    a missing bucket, a bad endpoint or refused credentials raise :class:`ConfigError`.
    """
    from pyarrow import fs

    pafs, path = filesystem(uri, options)
    prefix = scheme(uri) + "://"
    try:
        info = pafs.get_file_info(path.rstrip("/"))
        if info.type == fs.FileType.File:
            return [ObjectInfo(prefix + info.path, int(info.size), _utc(info.mtime))]
        bucket = path.split("/", 1)[0]
        if info.type == fs.FileType.NotFound and pafs.get_file_info(bucket).type == fs.FileType.NotFound:
            raise FileNotFoundError(f"NoSuchBucket: bucket {bucket!r} does not exist")
        infos = pafs.get_file_info(fs.FileSelector(path.rstrip("/"), recursive=True, allow_not_found=True))
    except OSError as exc:
        raise store_error(uri, exc, what="drop", cls=ConfigError) from None
    found = [ObjectInfo(prefix + i.path, int(i.size), _utc(i.mtime)) for i in infos if i.type == fs.FileType.File]
    return sorted(found, key=lambda o: o.uri)


def open_input(uri: str, options: Mapping[str, str] | None = None) -> Any:
    """A readable binary stream of the object ``uri`` (raises ``OSError`` if unreadable)."""
    pafs, path = filesystem(uri, options)
    return pafs.open_input_stream(path)


def read_bytes(uri: str, options: Mapping[str, str] | None = None) -> bytes:
    """The whole object ``uri`` (raises ``OSError`` if unreadable)."""
    with open_input(uri, options) as stream:
        return stream.read()


def _utc(value: Any) -> dt.datetime:
    if value is None:
        return dt.datetime.fromtimestamp(0, dt.timezone.utc)
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


# -- errors ---------------------------------------------------------------------------------

_REASONS = (  # most specific first: "failed to get credentials" also says "failed to connect"
    (("failed to get aws credentials", "no credentials", "unable to locate credentials",
      "missing credentials", "credentials not found", "credentialsnotloaded"), "no credentials found"),
    (("nosuchbucket", "no_such_bucket", "bucket does not exist"), "the bucket does not exist"),
    (("invalidaccesskeyid", "signaturedoesnotmatch", "accessdenied", "access_denied", "access denied",
      "status: 403", "403 forbidden"), "access denied (check the credentials)"),
    (("connection refused", "could not connect", "tcp connect error", "dns error", "couldn't resolve",
      "network_connection", "timed out"), "cannot connect to the object store"),
)


_S3_HINTS = {
    "no credentials found": "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_REGION), or pass "
                            "--storage-option aws_access_key_id=... --storage-option aws_secret_access_key=...",
    "access denied (check the credentials)": "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or the "
                                             "--storage-option ones) and the bucket's permissions",
    "the bucket does not exist": "create the bucket, or check the URI (and AWS_ENDPOINT_URL: is it the right server?)",
    "cannot connect to the object store": "check the endpoint: AWS_ENDPOINT_URL (S3-compatible servers) or "
                                          "--storage-option aws_endpoint=http://HOST:PORT, and the network",
}


def describe(exc: BaseException) -> str:
    """A short reason for an object-store failure, from whatever the library raised."""
    text = str(exc)
    low = text.lower()
    for needles, reason in _REASONS:
        if any(n in low for n in needles):
            return reason
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return first[:200]


def store_error(
    uri: str,
    exc: BaseException,
    *,
    what: str = "database",
    options: Mapping[str, str] | None = None,
    cls: type[EmbedscopeError] = DatabaseError,
) -> EmbedscopeError:
    """A one-line domain error for a failure reaching ``uri``, with the fix as its hint."""
    resolved = resolve_options(uri, options)
    endpoint = resolved.get("aws_endpoint") or ("AWS" if scheme(uri).startswith("s3") else scheme(uri))
    reason = describe(exc)
    if scheme(uri).startswith("s3"):
        hint = _S3_HINTS.get(reason, _S3_HINTS["no credentials found"])
    else:
        hint = "check the URI, and pass credentials as --storage-option KEY=VALUE (LanceDB's storage option names)"
    return cls(f"cannot reach {what} {uri} (endpoint {endpoint}): {reason}", hint)
