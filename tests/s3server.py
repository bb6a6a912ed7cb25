"""A real local S3-compatible server for tests: ``moto`` in server mode on 127.0.0.1.

:class:`S3Server` starts ``python -m moto.server`` as a subprocess on a free port, waits for it
to answer, creates a bucket, and stops it (by its pid) at the end. Tests reach it through the
same environment variables a user would set (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ...),
given to subprocesses explicitly and to the test process with ``monkeypatch``.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BUCKET = "embedscope-test"  # bucket names must be DNS-valid
# whatever the machine running the tests has configured must not leak in
_AWS_VARS = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_ENDPOINT_URL_S3",
             "AWS_ENDPOINT", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
             "AWS_ROLE_ARN", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
             "EMBEDSCOPE_STORAGE_OPTIONS")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class S3Server:
    """One moto server process and the bucket in it."""

    def __init__(self, log_dir: Path) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.bucket = BUCKET
        self._log = open(log_dir / "moto.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT)
        self._prefixes = itertools.count()
        try:
            self._wait_ready()
            self.client().create_bucket(Bucket=self.bucket)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited {self.proc.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"moto server did not listen on {self.port} within {timeout}s")

    def env(self) -> dict[str, str]:
        """What a user sets to reach this server (and nothing else: no instance metadata)."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_EC2_METADATA_DISABLED": "true"}

    def subprocess_env(self, **overrides: str | None) -> dict[str, str]:
        """A full environment for a CLI subprocess; an override of ``None`` removes the variable."""
        env = {k: v for k, v in os.environ.items() if k not in _AWS_VARS}
        env.update(self.env())
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing",
                            aws_secret_access_key="testing", region_name="us-east-1")

    def prefix(self, name: str) -> str:
        """A fresh ``s3://bucket/<name>-<n>`` URI, so tests never see each other's objects."""
        return f"s3://{self.bucket}/{name}-{next(self._prefixes)}"

    def upload(self, uri: str, data: bytes) -> None:
        key = uri.split(f"s3://{self.bucket}/", 1)[1]
        self.client().put_object(Bucket=self.bucket, Key=key, Body=data)

    def keys(self, uri: str) -> list[str]:
        prefix = uri.split(f"s3://{self.bucket}/", 1)[1]
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self._log.close()
