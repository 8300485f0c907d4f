"""The real `segmind` SDK (from PyPI) against `openremix serve` on loopback."""

from __future__ import annotations

import io

import httpx
import pytest
import segmind
from PIL import Image
from segmind import InferenceFailed, SegmindClient, SegmindError

from tests.support.servers import OpenRemixProcess

MODEL = "ideogram-3-remix"


@pytest.fixture(scope="module")
def client(server: OpenRemixProcess) -> SegmindClient:
    from tests.support.servers import TEST_KEY

    return SegmindClient(api_key=TEST_KEY, base_url=f"{server.base_url}/v1")


def payload(source: str, **extra: object) -> dict:
    return {"image": source, "prompt": "painted like van gogh's starry night", "seed": 11,
            "rendering_speed": "TURBO", **extra}


def test_run_sync_returns_jpeg_of_requested_resolution(client, astronaut_uri):
    response = client.run_sync(MODEL, **payload(astronaut_uri, resolution="1312x736"))
    assert response.headers["content-type"] == "image/jpeg"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "JPEG"
    assert image.size == (1312, 736)
    for header in ("x-request-id", "x-generation-time", "x-seed-value", "x-cost",
                   "x-remaining-credits"):
        assert response.headers.get(header), header
    assert response.headers["x-seed-value"] == "11"


def test_run_sync_aspect_ratio_maps_to_resolution(client, astronaut_uri):
    response = client.run_sync(MODEL, **payload(astronaut_uri, aspect_ratio="9x16"))
    assert Image.open(io.BytesIO(response.content)).size == (736, 1312)


def test_submit_async_and_wait_returns_result_with_absolute_output(client, chelsea_uri):
    job = client.submit_async(MODEL, **payload(chelsea_uri, seed=5))
    assert job.status_url.startswith("http://127.0.0.1:")
    assert job.response_url.startswith("http://127.0.0.1:")
    result = job.wait(timeout=120, interval=0.2)
    assert result["status"] == "COMPLETED"
    assert result["request_id"] == job.request_id
    assert result["error"] is None
    assert result["seed"] == 5
    assert result["resolution"] == "1024x1024"
    assert result["metrics"]["inference_time"] > 0
    assert result["metrics"]["cost"] > 0
    assert result["output"].startswith("http://127.0.0.1:")
    assert result["images"][0]["url"] == result["output"]
    # The output URL is readable without any API key.
    image = httpx.get(result["output"], timeout=10)
    assert image.status_code == 200
    assert image.headers["content-type"] == "image/jpeg"
    assert result["images"][0]["file_size"] == len(image.content)
    assert Image.open(io.BytesIO(image.content)).size == (1024, 1024)


def test_module_level_run_uses_default_client(server, test_key, astronaut_uri, monkeypatch):
    monkeypatch.setattr(segmind, "_default_client",
                        SegmindClient(api_key=test_key, base_url=f"{server.base_url}/v1"))
    result = segmind.run(MODEL, **payload(astronaut_uri, seed=3))
    assert result["status"] == "COMPLETED"
    assert result["prompt"].startswith("painted like van gogh")
    response = segmind.run_sync(MODEL, **payload(astronaut_uri, seed=3))
    assert response.content[:2] == b"\xff\xd8"


def test_failed_job_raises_inference_failed_with_detail_and_request_id(client, astronaut_uri):
    from openremix.engine.style.engine import DEFAULT_BLOCKLIST

    blocked = sorted(DEFAULT_BLOCKLIST)[0]
    job = client.submit_async(MODEL, **payload(astronaut_uri, prompt=f"a {blocked} scene",
                                               magic_prompt="OFF"))
    with pytest.raises(InferenceFailed) as caught:
        job.wait(timeout=60, interval=0.2)
    assert "content filter" in caught.value.detail
    assert caught.value.status_body["request_id"] == job.request_id
    # The result route answers the same FAILED body with 422.
    status = client._client.get(job.response_url)
    assert status.status_code == 422
    assert status.json()["status"] == "FAILED"
    assert status.json()["is_image_safe"] is False


def test_sync_failure_is_422_with_error(client, astronaut_uri):
    from openremix.engine.style.engine import DEFAULT_BLOCKLIST

    blocked = sorted(DEFAULT_BLOCKLIST)[0]
    with pytest.raises(SegmindError) as caught:
        client.run_sync(MODEL, **payload(astronaut_uri, prompt=f"{blocked}", magic_prompt="OFF"))
    assert caught.value.status == 422
    assert "content filter" in caught.value.detail


def test_missing_and_bad_keys_are_401(server, astronaut_uri):
    anonymous = SegmindClient(api_key=None, base_url=f"{server.base_url}/v1")
    anonymous.api_key = None
    with pytest.raises(SegmindError) as caught:
        anonymous.run_sync(MODEL, **payload(astronaut_uri))
    assert caught.value.status == 401
    assert caught.value.detail == "Missing Authorization or x-api-key in header"
    wrong = SegmindClient(api_key="or_not_a_key", base_url=f"{server.base_url}/v1")
    with pytest.raises(SegmindError) as caught:
        wrong.submit_async(MODEL, **payload(astronaut_uri))
    assert caught.value.status == 401
    assert caught.value.detail == "Unauthorized. API key is invalid or may have expired"


def test_status_routes_need_a_key(server, client, astronaut_uri):
    job = client.submit_async(MODEL, **payload(astronaut_uri))
    assert httpx.get(job.status_url).status_code == 401
    assert httpx.get(job.response_url).status_code == 401
    job.wait(timeout=60, interval=0.2)


def test_unknown_model_and_unknown_request_are_404(client, server, test_key, astronaut_uri):
    with pytest.raises(SegmindError) as caught:
        client.run_sync("no-such-model", **payload(astronaut_uri))
    assert caught.value.status == 404
    assert caught.value.detail == "Model no-such-model not found"
    missing = "5b0e4c7e-0000-4000-8000-000000000000"
    response = httpx.get(f"{server.base_url}/v2/requests/{missing}/status",
                         headers={"x-api-key": test_key})
    assert response.status_code == 404
    assert response.json()["error"] == f"Request {missing} not found"


def test_another_keys_request_is_not_found(client, server, other_key, astronaut_uri):
    job = client.submit_async(MODEL, **payload(astronaut_uri))
    response = httpx.get(job.status_url, headers={"x-api-key": other_key})
    assert response.status_code == 404
    job.wait(timeout=60, interval=0.2)


def test_bad_parameters_are_400_naming_the_field(client, astronaut_uri):
    cases = [
        ({"image_weight": 0}, "image_weight"),
        ({"resolution": "1000x1000"}, "resolution"),
        ({"aspect_ratio": "1x1", "resolution": "1024x1024"}, "aspect_ratio"),
        ({"rendering_speed": "LUDICROUS"}, "rendering_speed"),
        ({"style_codes": ["XYZ"]}, "style_codes"),
        ({"prompt": "   "}, "prompt"),
        ({"image": "data:image/png;base64,!!!notbase64"}, "image"),
        ({"color_palette": {"name": "EMBER", "members": [{"color_hex": "#ff0000"}]}},
         "color_palette"),
    ]
    for extra, field in cases:
        with pytest.raises(SegmindError) as caught:
            client.submit_async(MODEL, **payload(astronaut_uri, **extra))
        assert caught.value.status == 400, extra
        assert caught.value.detail.startswith(field), (extra, caught.value.detail)


def test_curl_style_routes(server, test_key, astronaut_uri):
    headers = {"x-api-key": test_key}
    submitted = httpx.post(f"{server.base_url}/v2/{MODEL}", json=payload(astronaut_uri, foo=1),
                           headers=headers)
    assert submitted.status_code == 200
    body = submitted.json()
    assert body["status"] == "QUEUED"
    assert set(body) >= {"request_id", "poll_url", "status_url", "response_url"}
    request_id = body["request_id"]
    for _ in range(300):
        status = httpx.get(body["status_url"], headers=headers).json()
        assert status["status"] in ("QUEUED", "PROCESSING", "COMPLETED")
        if status["status"] == "COMPLETED":
            break
        assert status["status_url"] == body["status_url"]
        import time

        time.sleep(0.1)
    assert status == {"status": "COMPLETED", "request_id": request_id,
                      "metrics": {"inference_time": status["metrics"]["inference_time"]}}
    v2 = httpx.get(f"{server.base_url}/v2/requests/{request_id}", headers=headers).json()
    v1 = httpx.get(body["poll_url"], headers=headers).json()
    assert body["poll_url"] == f"{server.base_url}/v1/requests/{request_id}"
    assert v1 == v2
    assert v2["warnings"] == ["unknown parameter 'foo' ignored"]
    credits = httpx.get(f"{server.base_url}/v1/get-user-credits", headers=headers).json()
    assert set(credits) == {"credits", "free-credits"}


def test_same_seed_same_bytes_other_seed_differs(client, chelsea_uri):
    first = client.run_sync(MODEL, **payload(chelsea_uri, seed=42)).content
    again = client.run_sync(MODEL, **payload(chelsea_uri, seed=42)).content
    other = client.run_sync(MODEL, **payload(chelsea_uri, seed=43)).content
    assert first == again
    assert first != other


def test_errors_never_use_the_framework_envelope(server, test_key):
    headers = {"x-api-key": test_key}
    not_json = httpx.post(f"{server.base_url}/v2/{MODEL}", content=b"hello",
                          headers={**headers, "content-type": "text/plain"})
    assert not_json.status_code == 406
    assert "error" in not_json.json()
    broken = httpx.post(f"{server.base_url}/v2/{MODEL}", content=b"{",
                        headers={**headers, "content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"].startswith("body:")
    wrong_method = httpx.get(f"{server.base_url}/v2/{MODEL}", headers=headers)
    assert wrong_method.status_code == 405
    assert "detail" not in wrong_method.json()
