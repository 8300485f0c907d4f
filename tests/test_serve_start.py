"""How `openremix serve` starts, seen from its real command line: the banner appears only once
the port is bound (a port in use is one line and exit 2, no banner), and it names the pages a
person opens next: the playground and the API docs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.support.servers import free_port


def serve(tmp_path: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "OPENREMIX_DATA_DIR": str(tmp_path / "data"), "OPENREMIX_WORKERS": "0",
           "OPENREMIX_HOST": "127.0.0.1", "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, "-m", "openremix.cli", "serve", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_port_in_use_is_one_line_and_no_banner(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = serve(tmp_path, port)
        _, stderr = started.communicate(timeout=120)
    assert started.returncode == 2
    assert stderr.strip() == (f"error: cannot listen on 127.0.0.1:{port}: Address already in "
                              "use (another program may use the port: choose another with "
                              "--port or OPENREMIX_PORT)")


def test_the_banner_comes_once_the_port_listens_and_names_the_pages(tmp_path: Path):
    port = free_port()
    started = serve(tmp_path, port)
    try:
        lines: list[str] = []
        assert started.stderr is not None
        while not any(line.startswith("try: ") for line in lines):
            line = started.stderr.readline()
            assert line, f"serve ended early: {lines}"
            lines.append(line.rstrip("\n"))
            if "serving on" in line:
                # Said only when true: the port takes connections from this moment on.
                socket.create_connection(("127.0.0.1", port), timeout=5).close()
        url = f"http://127.0.0.1:{port}"
        banner = "\n".join(lines)
        assert f"serving on {url}" in banner
        assert f"playground  {url}/\n" in banner + "\n"
        assert f"API docs    {url}/docs  (also /redoc, /openapi.json)" in banner
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/docs", timeout=5).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        started.terminate()
        started.communicate(timeout=60)
