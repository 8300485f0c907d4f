"""Ideogram's own remix API (`/v1/ideogram-v3/remix`, `/v1/ideogram-v4/remix`) against
`openremix serve` on loopback, called as Ideogram's documentation calls it: a multipart form,
the key in `Api-Key`, a synchronous JSON answer. Same queue, keys and credits as Segmind's."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from openremix.engine.safety import DEFAULT_BLOCKLIST
from tests.support.images import photo
from tests.support.servers import TEST_KEY, OpenRemixProcess

COST = 0.04  # OPENREMIX_COST_PER_REQUEST's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    """`openremix serve` on its embedded defaults, given time to load on a busy machine."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("ideogram")).wait_ready(300)
    yield proc
    proc.stop()


def jpeg(name: str = "astronaut", size: int = 256) -> bytes:
    buffer = io.BytesIO()
    photo(name, size=size).save(buffer, "JPEG")
    return buffer.getvalue()


def remix(server: OpenRemixProcess, fields: dict, *, version: str = "3",
          files: list | None = None, key: str | None = TEST_KEY) -> httpx.Response:
    headers = {"Api-Key": key} if key else {}
    files = files if files is not None else [("image", ("photo.jpg", jpeg(), "image/jpeg"))]
    return httpx.post(f"{server.base_url}/v1/ideogram-v{version}/remix", headers=headers,
                      data=fields, files=files, timeout=180)


def credits(server: OpenRemixProcess) -> float:
    body = httpx.get(f"{server.base_url}/v1/get-user-credits",
                     headers={"x-api-key": TEST_KEY}, timeout=10).json()
    return body["credits"] + body["free-credits"]


def stored_outputs(server: OpenRemixProcess) -> set[Path]:
    return {p for p in (server.data_dir / "outputs").rglob("*") if p.is_file()}


def test_v3_remix_makes_num_images_with_consecutive_seeds_charged_per_image(server):
    before = credits(server)
    response = remix(server, {"prompt": "a watercolour of an astronaut", "num_images": "3",
                              "seed": "7", "rendering_speed": "TURBO", "aspect_ratio": "16x9",
                              "magic_prompt": "OFF"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"created", "data"}
    assert body["created"].endswith("+00:00")
    assert [image["seed"] for image in body["data"]] == [7, 8, 9]
    pictures = []
    for image in body["data"]:
        assert image["is_image_safe"] is True
        assert image["resolution"] == "1312x736"
        assert image["prompt"] == "a watercolour of an astronaut"
        assert image["style_type"] == "GENERAL"
        fetched = httpx.get(image["url"], timeout=10)  # no key needed
        assert fetched.status_code == 200
        pictures.append(fetched.content)
        assert Image.open(io.BytesIO(fetched.content)).size == (1312, 736)
    assert len(set(pictures)) == 3  # three seeds, three different images
    assert credits(server) == pytest.approx(before - 3 * COST)
    # The same job is on the shared queue: Segmind's result route reads it by its id.
    result = httpx.get(f"{server.base_url}/v2/requests/{response.headers['x-request-id']}",
                       headers={"x-api-key": TEST_KEY}, timeout=10).json()
    assert [image["url"] for image in result["images"]] == [i["url"] for i in body["data"]]
    assert result["metrics"]["cost"] == pytest.approx(3 * COST)


def test_v3_takes_repeated_style_codes_a_json_palette_and_reference_files(server):
    files = [("image", ("photo.jpg", jpeg(), "image/jpeg")),
             ("style_reference_images", ("ref.jpg", jpeg("chelsea", 64), "image/jpeg"))]
    response = remix(server, {"prompt": "poster", "rendering_speed": "TURBO",
                              "color_palette": '{"name": "PASTEL"}', "seed": "3"}, files=files)
    assert response.status_code == 200, response.text
    codes = remix(server, {"prompt": "poster", "rendering_speed": "TURBO",
                           "style_codes": ["A1B2C3D4", "00ff00ff"]})
    assert codes.status_code == 200, codes.text


def test_v4_remix_takes_text_prompt_and_answers_2k_by_default(server):
    response = remix(server, {"text_prompt": "make it a cartoon", "rendering_speed": "TURBO",
                              "seed": "1"}, version="4")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["response_type"] == "url"
    (image,) = body["data"]
    assert image["resolution"] == "2048x2048"
    fetched = httpx.get(image["url"], timeout=10)
    assert Image.open(io.BytesIO(fetched.content)).size == (2048, 2048)


@pytest.mark.parametrize(("version", "fields", "files", "names"), [
    ("3", {"prompt": "p", "num_images": "9"}, None, "num_images: must be an integer from 1 to 8"),
    ("3", {"prompt": "p", "num_images": "0"}, None, "num_images:"),
    ("3", {"prompt": "p", "image_weight": "101"}, None, "image_weight: must be an integer"),
    ("3", {"prompt": "p", "aspect_ratio": "1x1", "resolution": "1024x1024"}, None,
     "aspect_ratio: cannot be combined with resolution"),
    ("3", {"prompt": "p", "resolution": "2048x2048"}, None, "resolution: must be one of the 69"),
    ("3", {"prompt": "p", "style_codes": "nothex!!"}, None, "style_codes"),
    ("3", {"prompt": "p", "style_preset": "BAUHAUS"}, None, "style_preset: is not supported"),
    ("3", {"prompt": "p"}, [("image", (None, "https://example.com/a.jpg"))],
     "image: must be a file upload"),
    ("3", {"prompt": "p"}, [("image", ("a.jpg", b"not an image", "image/jpeg"))], "image:"),
    ("3", {}, [("prompt", ("p.txt", b"p", "text/plain"))], "prompt: must be a text field"),
    ("3", {"prompt": ""}, None, "prompt: "),
    ("4", {"prompt": "p"}, None, "text_prompt: is required"),
    ("4", {"text_prompt": "p", "resolution": "1024x1024"}, None,
     "resolution: must be one of the 23"),
])
def test_bad_input_is_a_400_in_ideograms_envelope_and_charges_nothing(
        server, version, fields, files, names):
    before, outputs = credits(server), stored_outputs(server)
    response = remix(server, fields, version=version, files=files)
    assert response.status_code == 400, response.text
    assert set(response.json()) == {"error"}
    assert response.json()["error"].startswith(names), response.json()
    assert credits(server) == pytest.approx(before)
    assert stored_outputs(server) == outputs


def test_a_json_body_is_refused_with_a_400_naming_multipart(server):
    response = httpx.post(f"{server.base_url}/v1/ideogram-v3/remix",
                          headers={"Api-Key": TEST_KEY}, json={"prompt": "p"}, timeout=10)
    assert response.status_code == 400
    assert response.json() == {"error": "body: must be multipart/form-data (got "
                                        "application/json)"}


def test_a_missing_or_wrong_key_is_401_in_ideograms_envelope(server):
    assert remix(server, {"prompt": "p"}, key=None).status_code == 401
    wrong = remix(server, {"prompt": "p"}, key="nope")
    assert wrong.status_code == 401
    assert set(wrong.json()) == {"error"}


def test_a_blocked_prompt_is_ideograms_422_refunded_and_nothing_stored(server):
    before, outputs = credits(server), stored_outputs(server)
    blocked = sorted(DEFAULT_BLOCKLIST)[0]
    response = remix(server, {"prompt": f"a {blocked} scene", "num_images": "2",
                              "magic_prompt": "OFF"})
    assert response.status_code == 422
    assert response.json()["error"].startswith(
        "Prompt or provided image failed the safety check")
    assert credits(server) == pytest.approx(before)
    assert stored_outputs(server) == outputs


def test_segmind_slugs_still_answer_as_before(server):
    response = httpx.post(f"{server.base_url}/v1/ideogram-9-remix",
                          headers={"x-api-key": TEST_KEY}, json={}, timeout=10)
    assert response.status_code == 404
    assert response.json()["error"] == "Model ideogram-9-remix not found"
    # num_images stays an unknown key on Segmind's wire: one image, and a warning.
    submit = httpx.post(f"{server.base_url}/v2/ideogram-3-remix",
                        headers={"x-api-key": TEST_KEY}, timeout=10,
                        json={"image": "data:image/jpeg;base64,"
                              + __import__("base64").b64encode(jpeg()).decode(),
                              "prompt": "p", "num_images": 3, "rendering_speed": "TURBO"})
    assert submit.status_code == 200
    assert submit.json()["request_id"]


def test_openapi_documents_each_wire_with_its_multipart_fields_and_answers(server):
    schema = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    for path, prompt in (("/v1/ideogram-v3/remix", "prompt"),
                         ("/v1/ideogram-v4/remix", "text_prompt"),
                         ("/v1/images/edits", "prompt")):
        operation = schema["paths"][path]["post"]
        form = operation["requestBody"]["content"]["multipart/form-data"]
        assert form["schema"]["required"] == ["image", prompt]
        assert "image/png" in form["encoding"]["image"]["contentType"]
        assert {"200", "400", "401", "429"} <= set(operation["responses"])
        answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert answer["$ref"].split("/")[-1] in {"IdeogramRemixResponse", "OpenAIImagesResponse"}
    v3 = schema["paths"]["/v1/ideogram-v3/remix"]["post"]["requestBody"]["content"]
    properties = v3["multipart/form-data"]["schema"]["properties"]
    assert properties["image"]["format"] == "binary"
    assert properties["num_images"]["maximum"] == 8
    assert len(properties["resolution"]["enum"]) == 69


def test_a_call_past_the_wire_deadline_is_a_504_in_each_envelope_and_the_job_goes_on(
        start_process):
    slow = start_process(env={"OPENREMIX_ENGINE": "tests.support.slow_engine:SlowStyleEngine",
                              "SLOW_ENGINE_STEP_SECONDS": "0.4",
                              "OPENREMIX_WIRE_SYNC_TIMEOUT_SECONDS": "0.3"},
                         ready=False).wait_ready(300)
    response = remix(slow, {"prompt": "p", "rendering_speed": "TURBO"})
    assert response.status_code == 504
    assert set(response.json()) == {"error"}
    assert "did not finish within 0.3 s" in response.json()["error"]
    request_id = response.headers["x-request-id"]
    openai_answer = httpx.post(f"{slow.base_url}/v1/images/edits",
                               headers={"Authorization": f"Bearer {TEST_KEY}"},
                               data={"prompt": "p", "quality": "low"},
                               files=[("image", ("photo.jpg", jpeg(), "image/jpeg"))], timeout=60)
    assert openai_answer.status_code == 504
    assert openai_answer.json()["error"]["code"] == "timeout"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        result = httpx.get(f"{slow.base_url}/v2/requests/{request_id}",
                           headers={"x-api-key": TEST_KEY}, timeout=10).json()
        if result["status"] == "COMPLETED":
            break
        time.sleep(0.3)
    assert result["status"] == "COMPLETED"
