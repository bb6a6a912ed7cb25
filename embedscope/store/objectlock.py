"""A lock of a database on S3: a lease object written with conditional puts.

There is no ``flock`` on an object store, and Lance's own commit protocol does not make
``merge_insert`` unique across writers (measured: three processes upserting the same keys into
one S3 table at once left duplicate keys). So a database on S3 has lock objects (the writer
lock ``<db>/.embedscope-writer.lock``, the watch lock ``<db>/.embedscope-watch.lock``; see
:mod:`embedscope.store.locks`, which chooses this module for ``s3://``), managed with S3
conditional writes:

- **take**: ``PutObject`` with ``If-None-Match: *`` — exactly one of several racing writers wins;
- **renew**: the holder rewrites it every ``ttl/4`` seconds with ``If-Match: <its ETag>``
  (a heartbeat thread), so a live holder's lease never runs out;
- **release**: the holder overwrites it, again ``If-Match``, with ``{"released": true}``;
- **take over**: a lease whose last renewal is older than its ``ttl`` (by the *server's* clock:
  the response ``Date`` minus the object's ``Last-Modified``, so client clock skew does not
  matter) or that was released is replaced with ``If-Match: <the stale ETag>`` — of several
  waiters exactly one succeeds. A killed holder therefore blocks writers for at most ``ttl``.

Every body carries a random token, so ETags (content MD5s) never repeat. Needs an S3 endpoint
that honours conditional writes (AWS S3 since 2024, MinIO, moto, ...) and ``boto3``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Mapping

from embedscope.errors import DatabaseLockedError, DependencyError

log = logging.getLogger(__name__)

LEASE_SECONDS = 60.0


@dataclass
class ObjectLease:
    """A held lease. ``previous`` is what the object said before we took it (a dead holder)."""

    client: Any
    bucket: str
    key: str
    etag: str
    info: dict
    ttl: float
    previous: dict = field(default_factory=dict)
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start_heartbeat(self) -> None:
        self._thread = threading.Thread(target=self._beat, name="embedscope-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._write({**self.info, "renewed": _now()})
            except _Lost:
                self.lost = True
                log.error("the writer lease %s/%s was taken over by another writer (this process stalled for "
                          "more than %.0fs); stop this writer", self.bucket, self.key, self.ttl)
                return
            except Exception as exc:  # a network blip: the lease has ttl/4 x 3 to spare
                log.warning("renewing the writer lease failed: %s (retrying)", exc)

    def _write(self, body: dict) -> None:
        with self._lock:
            self.etag = _put(self.client, self.bucket, self.key, body, if_match=self.etag)

    def release(self) -> None:
        """Stop renewing and mark the lease released (a waiter takes it at once)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self.lost:
            return
        try:
            self._write({"released": True, "by": self.info.get("owner"), "token": uuid.uuid4().hex})
        except Exception as exc:  # the lease then simply expires
            log.warning("releasing the writer lease failed: %s (it expires in %.0fs)", exc, self.ttl)

    def abandon(self) -> None:
        """Stop renewing without releasing, as a killed process would (tests)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)


class _Lost(Exception):
    pass


def s3_client(uri: str, options: Mapping[str, str] | None) -> Any:
    """A boto3 S3 client for ``uri`` with the resolved storage options."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise DependencyError("writing to an s3:// database needs boto3 (for its writer lock)",
                              "pip install boto3") from None
    from embedscope.objectstore import resolve_options

    o = resolve_options(uri, options)
    kw: dict[str, Any] = {"config": Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)}
    if o.get("aws_endpoint"):
        kw["endpoint_url"] = o["aws_endpoint"]
    if o.get("aws_access_key_id"):
        kw["aws_access_key_id"] = o["aws_access_key_id"]
        kw["aws_secret_access_key"] = o.get("aws_secret_access_key")
        kw["aws_session_token"] = o.get("aws_session_token")
    if o.get("aws_region"):
        kw["region_name"] = o["aws_region"]
    return boto3.client("s3", **kw)


def split(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b`` → ``("bucket", "a/b")``."""
    rest = uri.split("://", 1)[1]
    bucket, _, key = rest.partition("/")
    return bucket, key


def acquire(
    uri: str,
    options: Mapping[str, str] | None = None,
    *,
    owner: str,
    wait: float = 0.0,
    ttl: float = LEASE_SECONDS,
    stop: threading.Event | None = None,
    what: str = "database",
    hint: str = "wait for it to finish, stop it, or pass --wait-lock SECONDS to wait",
) -> ObjectLease | None:
    """Take the lease object at ``uri`` (``s3://bucket/db/.embedscope-writer.lock``).

    Retries for ``wait`` seconds (``inf``: for ever); returns ``None`` if ``stop`` is set while
    waiting; raises :class:`DatabaseLockedError` naming the holder once ``wait`` has passed.
    """
    from botocore.exceptions import ClientError

    from embedscope.objectstore import store_error

    client = s3_client(uri, options)
    bucket, key = split(uri)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "owner": owner, "ttl": ttl,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": uuid.uuid4().hex}
    deadline = time.monotonic() + wait
    holder: dict = {}
    while True:
        try:
            try:
                etag = _put(client, bucket, key, info, if_none_match=True)
                return _held(client, bucket, key, etag, info, ttl, {})
            except _Lost:  # exists: is it live?
                current = _get(client, bucket, key)
                if current is not None:
                    etag, body, age = current
                    if body.get("released") or age > float(body.get("ttl", ttl)):
                        try:
                            new = _put(client, bucket, key, info, if_match=etag)
                            if not body.get("released"):
                                log.info("writer lease of %s taken over after %.0fs without renewal",
                                         _describe(body), age)
                            return _held(client, bucket, key, new, info, ttl, body)
                        except _Lost:
                            pass  # another waiter took it first
                    else:
                        holder = {**body, "_expires_in": float(body.get("ttl", ttl)) - age}
        except ClientError as exc:
            raise store_error(uri, exc, what=what) from None
        if time.monotonic() >= deadline:
            raise DatabaseLockedError(f"{what} is in use by another writer ({_describe(holder)})", hint)
        if stop is not None:
            if stop.wait(0.5):
                return None
        else:
            time.sleep(0.5)


def _held(client: Any, bucket: str, key: str, etag: str, info: dict, ttl: float, previous: dict) -> ObjectLease:
    lease = ObjectLease(client, bucket, key, etag, info, ttl, previous)
    lease.start_heartbeat()
    return lease


def _put(client: Any, bucket: str, key: str, body: dict, *, if_match: str | None = None,
         if_none_match: bool = False) -> str:
    from botocore.exceptions import ClientError

    kw: dict[str, Any] = {"Bucket": bucket, "Key": key, "ContentType": "application/json",
                          "Body": json.dumps({**body, "token": uuid.uuid4().hex}).encode()}
    if if_match is not None:
        kw["IfMatch"] = if_match
    if if_none_match:
        kw["IfNoneMatch"] = "*"
    try:
        return client.put_object(**kw)["ETag"]
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status in (409, 412) or code in ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"):
            raise _Lost(code) from None
        raise


def _get(client: Any, bucket: str, key: str) -> tuple[str, dict, float] | None:
    """(ETag, body, seconds since its last write by the server's clock), or None if absent."""
    from botocore.exceptions import ClientError

    try:
        resp = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
            return None
        raise
    try:
        body = json.loads(resp["Body"].read() or b"{}")
    except ValueError:
        body = {}
    server_now = resp.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    now = parsedate_to_datetime(server_now) if server_now else dt.datetime.now(dt.timezone.utc)
    age = (now - resp["LastModified"]).total_seconds()
    return resp["ETag"], body, age


def _describe(info: dict) -> str:
    if not info:
        return "unknown holder"
    left = info.get("_expires_in")
    tail = f"; if it died, its lease runs out in {max(0.0, left):.0f}s" if left is not None else ""
    return (f"{info.get('owner', '?')} pid {info.get('pid', '?')} on {info.get('host', '?')} "
            f"since {info.get('since', '?')}{tail}")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
