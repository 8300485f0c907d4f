"""A throwaway S3-compatible server on loopback, for the storage tests.

No MinIO server can be installed from PyPI or Debian 12's packages (Debian ships only MinIO's Go
client libraries; its `radosgw` needs a whole Ceph cluster), so the tests run against moto's
standalone server (`python -m moto.server`, from PyPI `moto[server]`): a separate process that
speaks the S3 HTTP API (path-style, SigV4) on a free port of 127.0.0.1 and keeps objects in
memory. boto3 talks to it over real HTTP exactly as it would to MinIO or R2.

One server serves the whole test run (`shared_server()`); each test makes its own bucket.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.support.servers import free_port

INSTALL_HINT = "S3 tests need boto3 and moto's server: pip install -e '.[s3,test]'"
START_TIMEOUT = 30.0
# moto accepts any credentials; boto3 still needs some to sign with.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "openremix-test",
    "AWS_SECRET_ACCESS_KEY": "openremix-test-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def unavailable_reason() -> str | None:
    """Why no S3 test server can be started here, or None when one can."""
    try:
        import boto3  # noqa: F401
        import flask  # noqa: F401  (what moto's server runs on: the `server` extra)
        import moto.server  # noqa: F401
    except ImportError:
        return INSTALL_HINT
    return None


class S3TestServer:
    """One running moto S3 server process; `stop()` ends it."""

    def __init__(self, port: int, proc: subprocess.Popen, log_path: Path) -> None:
        self.port = port
        self.proc = proc
        self.log_path = log_path
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self._client: Any = None

    @classmethod
    def start(cls) -> S3TestServer:
        port = free_port()
        log_path = Path(tempfile.mkdtemp(prefix="openremix-s3-")) / "server.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **CREDENTIALS},
            )
        server = cls(port, proc, log_path)
        server._wait_ready()
        return server

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the S3 test server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.endpoint_url}/moto-api/", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the S3 test server was not ready in {START_TIMEOUT}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def client(self) -> Any:
        """A boto3 S3 client of the test's own, to look behind openremix's back."""
        if self._client is None:
            import boto3

            self._client = boto3.session.Session(
                aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            ).client("s3", endpoint_url=self.endpoint_url)
        return self._client

    def create_bucket(self) -> str:
        """A new, empty bucket with a unique name."""
        name = f"openremix-test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def object_names(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


_shared: S3TestServer | None = None


def shared_server() -> S3TestServer:
    """The run's one S3 test server, started on first use and stopped when the run ends."""
    global _shared
    if _shared is None or _shared.proc.poll() is not None:
        _shared = S3TestServer.start()
        atexit.register(_shared.stop)
    return _shared
