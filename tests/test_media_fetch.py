"""SSRF-safe fetching against a real HTTP server on 127.0.0.1.

Traffic only ever goes to 127.0.0.1: an autouse guard makes any other connect() fail the test,
and refused hops (metadata, private ranges) are refused before a connection is attempted.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from PIL import Image

from openremix import __version__
from openremix.contract.errors import InputImageError, UnsafeURL
from openremix.media import addresses
from openremix.media.fetch import fetch_url, format_size
from openremix.media.images import ImageLoader
from tests.support.servers import forbid_non_loopback, http_server

MIB = 1024 * 1024


def _png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 16), (200, 40, 10)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png_bytes()


class Handler(BaseHTTPRequestHandler):
    """Routes: /image.png, /missing, /big-declared, /big-chunked, /slow, /drip, /echo,
    /hop/N (N redirects then the image), /to?loc=URL (one redirect to URL)."""

    protocol_version = "HTTP/1.1"
    seen_paths: list[str] = []  # noqa: RUF012 - shared on purpose, the server is per-module

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        type(self).seen_paths.append(self.path)
        url = urlparse(self.path)
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self._route(url.path, parse_qs(url.query))

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        if path == "/image.png":
            self._send(200, PNG, {"Content-Type": "image/png"})
        elif path == "/missing":
            self._send(404, b"not here")
        elif path == "/big-declared":
            self.send_response(200)
            self.send_header("Content-Length", str(11 * MIB))
            self.end_headers()
            self.wfile.write(b"\0" * 1024)
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            block = b"\0" * 65536
            for _ in range(40):  # 2.5 MiB, far past the small caps used below
                self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, PNG)
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif path == "/echo":
            body = f"{self.headers['Host']}|{self.headers['User-Agent']}".encode()
            self._send(200, body)
        elif path.startswith("/hop/"):
            left = int(path.rsplit("/", 1)[1])
            target = "/image.png" if left == 0 else f"/hop/{left - 1}"
            self._send(302, b"", {"Location": target})
        elif path == "/to":
            self._send(302, b"", {"Location": query["loc"][0]})
        else:
            self._send(404, b"")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with http_server(Handler) as url:
        yield url


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail loudly if anything tries to connect anywhere but loopback."""
    forbid_non_loopback(monkeypatch)
    Handler.seen_paths.clear()


def fetch(url: str, **overrides: object) -> bytes:
    options: dict[str, object] = {
        "field": "image",
        "max_bytes": 10 * MIB,
        "timeout": 5.0,
        "allow_private": True,
    }
    options.update(overrides)
    return fetch_url(url, **options)  # type: ignore[arg-type]


def test_fetches_an_image(server: str) -> None:
    assert fetch(f"{server}/image.png") == PNG


def test_sends_openremix_user_agent(server: str) -> None:
    host, agent = fetch(f"{server}/echo").decode().split("|")
    assert agent == f"openremix/{__version__}"
    assert host == server.removeprefix("http://")


def test_connects_to_the_checked_address_with_the_original_host_header(server: str) -> None:
    # The name exists only in the fake resolver: had anything done its own DNS lookup, the
    # fetch would fail. The server must still see the name in Host.
    port = server.rsplit(":", 1)[1]
    body = fetch(
        f"http://images.example.test:{port}/echo",
        resolver=lambda name: ["127.0.0.1"] if name == "images.example.test" else [],
    )
    assert body.decode().split("|")[0] == f"images.example.test:{port}"


def test_http_error_names_url_and_status(server: str) -> None:
    with pytest.raises(InputImageError) as caught:
        fetch(f"{server}/missing")
    assert caught.value.field == "image"
    assert caught.value.rule == f"could not fetch {server}/missing: HTTP 404"


def test_declared_length_over_the_cap_is_refused_early(server: str) -> None:
    with pytest.raises(InputImageError, match="image is larger than 10 MB"):
        fetch(f"{server}/big-declared")


def test_streamed_body_over_the_cap_is_cut_off(server: str) -> None:
    with pytest.raises(InputImageError, match="image is larger than 100000 bytes"):
        fetch(f"{server}/big-chunked", max_bytes=100_000)
    assert format_size(10 * MIB) == "10 MB"


def test_slow_server_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(InputImageError, match=r"timed out after 0\.5s"):
        fetch(f"{server}/slow", timeout=0.5)
    assert time.monotonic() - started < 1.4


def test_timeout_bounds_the_whole_download_not_each_read(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(InputImageError, match="timed out"):
        fetch(f"{server}/drip", timeout=0.6)
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_a_clear_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(InputImageError, match="connection failed"):
        fetch(f"http://127.0.0.1:{port}/image.png")


def test_follows_a_redirect_chain(server: str) -> None:
    assert fetch(f"{server}/hop/3") == PNG


def test_too_many_redirects_are_refused(server: str) -> None:
    with pytest.raises(InputImageError, match="more than 2 redirects"):
        fetch(f"{server}/hop/3", max_redirects=2)


def test_loopback_is_refused_unless_private_is_allowed(server: str) -> None:
    with pytest.raises(UnsafeURL) as caught:
        fetch(f"{server}/image.png", allow_private=False, field="style_reference_images[0]")
    assert caught.value.field == "style_reference_images[0]"
    assert Handler.seen_paths == []


def test_name_resolving_to_loopback_is_refused_before_connecting(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    with pytest.raises(UnsafeURL):
        fetch(
            f"http://images.example.test:{port}/image.png",
            allow_private=False,
            resolver=lambda name: ["127.0.0.1"],
        )
    assert Handler.seen_paths == []


@pytest.mark.parametrize(
    "location",
    [
        "http://metadata.internal.test/latest/meta-data/",  # fake-resolves to 169.254.169.254
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:169.254.169.254]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "file:///etc/passwd",
    ],
)
def test_redirect_to_metadata_is_refused_even_with_private_allowed(
    server: str, location: str
) -> None:
    def resolver(name: str) -> list[str]:
        return {"metadata.internal.test": ["169.254.169.254"]}.get(name, [])

    with pytest.raises(UnsafeURL) as caught:
        fetch(f"{server}/to?loc={location}", resolver=resolver)
    assert caught.value.field == "image"
    assert len(Handler.seen_paths) == 1  # only the first hop reached the server


@pytest.mark.parametrize(
    "location",
    [
        "http://10.0.0.5/cat.png",
        "http://127.0.0.2/cat.png",
        "http://0x7f.0.0.3/cat.png",
        "http://2130706434/cat.png",
        "http://localhost/cat.png",
        "http://internal.example.test/cat.png",  # fake-resolves to 192.168.0.10
        "http://[fd00::1]/cat.png",
    ],
)
def test_each_redirect_hop_is_checked(
    server: str, location: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Act as if the test server (127.0.0.1 only) were a public host, so that allow_private=False
    # can be exercised on the second hop; every other address keeps the real rule.
    real = addresses.is_forbidden_address
    monkeypatch.setattr(
        addresses, "is_forbidden_address", lambda ip: str(ip) != "127.0.0.1" and real(ip)
    )

    def resolver(name: str) -> list[str]:
        return {"internal.example.test": ["192.168.0.10"]}.get(name, [])

    with pytest.raises(UnsafeURL):
        fetch(f"{server}/to?loc={location}", allow_private=False, resolver=resolver)
    assert len(Handler.seen_paths) == 1


def test_unsupported_schemes_are_refused() -> None:
    for url in ("ftp://example.test/a.png", "file:///etc/passwd", "gopher://example.test/"):
        with pytest.raises(InputImageError):
            fetch(url)


def test_image_loader_fetches_and_decodes_a_url(server: str) -> None:
    loader = ImageLoader(allow_private=True, fetch_timeout=5.0)
    image = loader.load(f"{server}/image.png", "image")
    assert image.size == (32, 16)
    assert image.getpixel((0, 0)) == (200, 40, 10)


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, str, list[str]]]:
    """An https server on 127.0.0.1 with a self-signed cert for images.example.test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not available")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    name = "images.example.test"
    options = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
    options += [
        "-nodes",
        "-days",
        "1",
        "-subj",
        f"/CN={name}",
        "-addext",
        f"subjectAltName=DNS:{name}",
    ]
    command = [openssl, *options, "-keyout", str(key), "-out", str(cert)]
    subprocess.run(command, check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server_names: list[str] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], str(cert), server_names
    httpd.shutdown()
    httpd.server_close()


def test_https_pins_the_address_but_verifies_the_host_name(
    tls_server: tuple[int, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, cert, server_names = tls_server
    url = f"https://images.example.test:{port}/image.png"

    def resolver(name: str) -> list[str]:
        return ["127.0.0.1"] if name == "images.example.test" else []

    # Without trusting the self-signed cert, verification fails: TLS really is checked.
    with pytest.raises(InputImageError, match="CERTIFICATE_VERIFY_FAILED"):
        fetch(url, resolver=resolver)

    trusted = ssl.create_default_context(cafile=cert)
    real_client = httpx.Client

    class TrustingClient(real_client):  # type: ignore[misc, valid-type]
        def __init__(self, **kwargs: object) -> None:
            super().__init__(verify=trusted, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "Client", TrustingClient)
    assert fetch(url, resolver=resolver) == PNG
    assert server_names and set(server_names) == {"images.example.test"}
