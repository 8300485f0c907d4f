"""Every bad input a user can send gets a clear 4xx `{"error"}` naming the field (or, for what
only a worker can know, a FAILED job with a clear error) and never a 500. Nothing is lost."""

from __future__ import annotations

import base64
import http.server
import io
import struct
import time
import zlib
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from tests.support.images import data_uri, photo
from tests.support.servers import TEST_KEY, OpenRemixProcess, http_server

MODEL = "ideogram-3-remix"
HEADERS = {"x-api-key": TEST_KEY}


def post(base: str, payload: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{base}/v2/{MODEL}", json=payload, headers=HEADERS, timeout=30, **kw)


def b64(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def png_claiming(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims a huge size (a decompression bomb's header)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return (struct.pack(">I", len(payload)) + kind + payload
                + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    photo("coffee", size=256).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image() -> str:
    return data_uri(photo("coffee", size=128), "JPEG")


@pytest.mark.parametrize(
    ("payload_change", "field"),
    [
        ({"prompt": 5}, "prompt"),
        ({"prompt": "x" * 10_001}, "prompt"),
        ({"image_weight": "50"}, "image_weight"),
        ({"image_weight": 101}, "image_weight"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**31}, "seed"),
        ({"seed": True}, "seed"),
        ({"resolution": 1024}, "resolution"),
        ({"aspect_ratio": "7x5"}, "aspect_ratio"),
        ({"rendering_speed": "FAST"}, "rendering_speed"),
        ({"magic_prompt": "MAYBE"}, "magic_prompt"),
        ({"style_type": "ANIME"}, "style_type"),
        ({"style_codes": "ABCDEF12"}, "style_codes"),
        ({"style_codes": ["ABCDEF12"], "style_type": "REALISTIC"}, "style_codes"),
        ({"color_palette": {"name": "NEON"}}, "color_palette"),
        ({"color_palette": {"members": [{"color_hex": "red"}]}}, "color_palette"),
        ({"color_palette": {"members": [{"color_hex": "#ff0000", "color_weight": 2}]}},
         "color_palette"),
        ({"negative_prompt": ["x"]}, "negative_prompt"),
        ({"output_format": "gif"}, "output_format"),
        ({"image": 123}, "image"),
        ({"image": ""}, "image"),
        ({"image": "ftp://example.com/a.png"}, "image"),
        ({"image": "file:///etc/passwd"}, "image"),
        ({"image": "data:image/png;base64,@@@@"}, "image"),
        ({"image": "data:text/plain;base64,aGVsbG8="}, "image"),
        ({"image": b64(b"not an image at all")}, "image"),
        ({"image": b64(png_bytes()[:400])}, "image"),
        ({"image": b64(png_claiming(100_000, 100_000))}, "image"),
        ({"image": b64(png_claiming(5000, 300))}, "image"),
        ({"image": "http://127.0.0.1/a.png"}, "image"),
        ({"image": "http://169.254.169.254/latest/meta-data"}, "image"),
        ({"image": "http://10.0.0.7/a.png"}, "image"),
        ({"image": "http://localhost/a.png"}, "image"),
        ({"style_reference_images": ["data:image/png;base64,@@"]}, "style_reference_images"),
    ],
)
def test_bad_parameter_is_400_naming_the_field(server, image, payload_change, field):
    answer = post(server.base_url, {"image": image, "prompt": "x", **payload_change})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(field), answer.json()
    assert answer.json()["request_id"]


def test_an_11_mb_image_is_refused(server):
    big = b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * (11 * 1024 * 1024))
    answer = post(server.base_url, {"image": big, "prompt": "x"})
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("image:")
    assert "10 MB" in answer.json()["error"]


def test_style_references_over_10_mb_together_are_refused(server, image):
    blob = Image.effect_noise((1400, 1400), 120).convert("RGB")
    buffer = io.BytesIO()
    blob.save(buffer, "PNG")
    one = b64(buffer.getvalue())
    refs = [one] * (10 * 1024 * 1024 // len(buffer.getvalue()) + 1)
    answer = post(server.base_url, {"image": image, "prompt": "x",
                                    "style_reference_images": refs[:10]})
    assert answer.status_code in (400, 413), answer.text
    assert answer.json()["error"].startswith(("style_reference_images", "Request body"))


def test_body_shapes(server):
    base = server.base_url
    for raw, code in [(b"[1, 2]", 400), (b"null", 400), (b'"text"', 400), (b"", 400)]:
        answer = httpx.post(f"{base}/v2/{MODEL}", content=raw,
                            headers={**HEADERS, "content-type": "application/json"})
        assert answer.status_code == code, raw
        assert answer.json()["error"].startswith("body:")
    form = httpx.post(f"{base}/v2/{MODEL}", content=b"a=b",
                      headers={**HEADERS, "content-type": "application/x-www-form-urlencoded"})
    assert form.status_code == 406
    huge = httpx.post(f"{base}/v2/{MODEL}", content=b"x" * (33 * 1024 * 1024),
                      headers={**HEADERS, "content-type": "application/json"})
    assert huge.status_code == 413
    assert "error" in huge.json()
    unknown = post(base, {"image": "x", "prompt": "y"}, params={})
    assert unknown.status_code == 400


@pytest.mark.parametrize(
    ("raw", "start"),
    [
        (b'{"image": "x", "prompt": "p", "seed": ' + b"9" * 5000 + b"}", "seed:"),
        (b"[" * 100_000 + b"]" * 100_000, "body: is nested too deeply"),
        (b'{"image": "x", "prompt": "p", "color_palette": ' + b'{"a": ' * 2000 + b"1"
         + b"}" * 2000 + b"}", "body: is nested too deeply"),
        (b'{"image": "x", "prompt": "p", "style_codes": ' + b"[" * 40 + b"]" * 40 + b"}",
         "body: is nested too deeply"),
    ],
    ids=["seed-of-5000-digits", "json-100000-deep", "palette-2000-deep", "list-40-deep"],
)
def test_hostile_json_is_a_400_that_names_the_problem(server, raw, start):
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}", content=raw,
                        headers={**HEADERS, "content-type": "application/json"}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(start), answer.json()


def test_hostile_json_in_a_multipart_field_is_a_400(server):
    fields = {"prompt": "p", "color_palette": "[" * 5000 + "]" * 5000}
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}", data=fields, headers=HEADERS,
                        files={"image": ("a.png", png_bytes(), "image/png")}, timeout=30)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith("color_palette: is nested too deeply")


def test_a_file_in_a_text_field_of_a_multipart_submit_is_a_400(server):
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}", data={"image_weight": "40"},
                        headers=HEADERS, timeout=30,
                        files=[("image", ("a.png", png_bytes(), "image/png")),
                               ("prompt", ("p.txt", b"pop art", "text/plain"))])
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"] == ("prompt: must be a text field, not a file (files go in "
                                      "image or style_reference_images)")


def test_curl_default_content_type_with_a_json_body_is_accepted(server, image):
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}",
                        content=f'{{"image": "{image}", "prompt": "pop art"}}'.encode(),
                        headers={**HEADERS,
                                 "content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 200, answer.text


def test_trailing_slash_is_not_redirected(server, image):
    answer = httpx.post(f"{server.base_url}/v2/{MODEL}/", json={"image": image, "prompt": "x"},
                        headers=HEADERS)
    assert answer.status_code == 404
    assert "location" not in answer.headers


class _ImageHost(http.server.BaseHTTPRequestHandler):
    """Loopback image host: /ok.png, /missing.png (404), /slow.png, /to-metadata (redirect)."""

    image = png_bytes()

    def do_GET(self) -> None:
        if self.path == "/ok.png":
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(self.image)))
            self.end_headers()
            self.wfile.write(self.image)
        elif self.path == "/slow.png":
            time.sleep(3)
            self.send_response(200)
            self.end_headers()
        elif self.path == "/to-metadata":
            self.send_response(302)
            self.send_header("location", "http://169.254.169.254/latest/meta-data/")
            self.end_headers()
        else:
            self.send_response(404)
            self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_host() -> Iterator[str]:
    with http_server(_ImageHost) as url:
        yield url


@pytest.fixture(scope="module")
def private_ok(tmp_path_factory) -> Iterator[OpenRemixProcess]:
    """A server allowed to fetch from loopback (where the test image host runs)."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("private"), {
        "OPENREMIX_ALLOW_PRIVATE_URLS": "1", "OPENREMIX_FETCH_TIMEOUT_SECONDS": "1"}).wait_ready()
    yield proc
    proc.stop()


def final_status(base: str, request_id: str) -> httpx.Response:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{base}/v2/requests/{request_id}/status", headers=HEADERS)
        if answer.json()["status"] in ("COMPLETED", "FAILED"):
            return answer
        time.sleep(0.1)
    raise AssertionError("no terminal state")


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/missing.png", "HTTP 404"),
        ("/slow.png", "timed out"),
        ("/to-metadata", "cloud metadata service"),
    ],
)
def test_url_problems_fail_the_job_with_a_clear_error(private_ok, image_host, path, message):
    answer = post(private_ok.base_url, {"image": f"{image_host}{path}", "prompt": "x",
                                        "rendering_speed": "TURBO"})
    assert answer.status_code == 200
    status = final_status(private_ok.base_url, answer.json()["request_id"])
    assert status.status_code == 422
    error = status.json()["error"]
    assert error.startswith("image:") and message in error, error


def test_a_fetched_url_image_completes(private_ok, image_host):
    answer = post(private_ok.base_url, {"image": f"{image_host}/ok.png", "prompt": "pop art",
                                        "rendering_speed": "TURBO"})
    status = final_status(private_ok.base_url, answer.json()["request_id"])
    assert status.json()["status"] == "COMPLETED"
