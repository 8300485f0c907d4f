"""Real openremix processes on loopback for the end-to-end tests.

Each `OpenRemixProcess` runs the installed `openremix` command (`serve`, `api` or `worker`) in a
subprocess with its own environment, on a free port of 127.0.0.1, and is stopped with SIGTERM
(or killed with SIGKILL by fault tests).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
"""On the servers' PYTHONPATH, so `OPENREMIX_ENGINE=tests.support.slow_engine:...` imports."""
TEST_KEY = "or_test_key_for_the_suite_0001"
OTHER_KEY = "or_test_key_for_the_suite_0002"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A threaded HTTP server on a free loopback port; yields its base URL."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    """An ASGI app served by uvicorn in this process, on a free loopback port (for tests that
    must reach inside the process, e.g. to shorten a store's waits); yields its base URL."""
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the in-process server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{config.port}"
    finally:
        server.should_exit = True
        thread.join(10)


def forbid_non_loopback(monkeypatch: object) -> None:
    """Make any connection from this process to anything but loopback fail loudly."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> None:
        host = address[0] if isinstance(address, tuple) else address
        if host not in ("127.0.0.1", "::1"):
            raise AssertionError(f"test tried to connect to {address!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)  # type: ignore[attr-defined]


def openremix_command() -> list[str]:
    return [sys.executable, "-m", "openremix.cli"]


class OpenRemixProcess:
    def __init__(self, command: str, data_dir: Path, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.command = command
        self.data_dir = data_dir
        self.port = port or free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = data_dir / f"{command}-{self.port}.log"
        full_env = {
            **os.environ,
            "OPENREMIX_DATA_DIR": str(data_dir),
            "OPENREMIX_HOST": "127.0.0.1",
            "OPENREMIX_PORT": str(self.port),
            "OPENREMIX_API_KEYS": f"{TEST_KEY},{OTHER_KEY}",
            "PYTHONPATH": os.pathsep.join(
                [str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*openremix_command(), command], env=full_env, stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> OpenRemixProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openremix {self.command} exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        output = self.log()
        self.stop()  # never leave a process behind when a test gives up on it
        raise RuntimeError(f"openremix {self.command} not ready in {timeout}s:\n{output}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._log.close()
