"""The real `openai` SDK (from PyPI) against `openremix serve` on loopback:
`client.images.edit(...)` remixes, answered in OpenAI's shapes and error envelope, on the same
queue, keys and credits as every other wire."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from openremix.engine.safety import DEFAULT_BLOCKLIST
from tests.support.images import photo
from tests.support.servers import TEST_KEY, OpenRemixProcess

MODEL = "ideogram-3-remix"
COST = 0.04  # OPENREMIX_COST_PER_REQUEST's default


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    """`openremix serve` on its embedded defaults, given time to load on a busy machine."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("openai")).wait_ready(300)
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def client(server: OpenRemixProcess) -> openai.OpenAI:
    return openai.OpenAI(api_key=TEST_KEY, base_url=f"{server.base_url}/v1", timeout=180,
                         max_retries=0)


def jpeg(name: str = "astronaut", size: int = 256) -> tuple[str, bytes, str]:
    buffer = io.BytesIO()
    photo(name, size=size).save(buffer, "JPEG")
    return (f"{name}.jpg", buffer.getvalue(), "image/jpeg")


def credits(server: OpenRemixProcess) -> float:
    body = httpx.get(f"{server.base_url}/v1/get-user-credits",
                     headers={"x-api-key": TEST_KEY}, timeout=10).json()
    return body["credits"] + body["free-credits"]


def test_edit_answers_n_urls_of_pngs_charged_per_image(server, client):
    before = credits(server)
    result = client.images.edit(image=jpeg(), prompt="a watercolour", model=MODEL, n=2,
                                size="1024x1024", extra_body={"seed": 21})
    assert len(result.data) == 2
    assert result.size == "1024x1024"
    assert result.output_format == "png"
    pictures = []
    for image in result.data:
        assert image.b64_json is None
        assert image.revised_prompt
        fetched = httpx.get(image.url, timeout=10)  # no key needed
        assert fetched.headers["content-type"] == "image/png"
        pictures.append(fetched.content)
        assert Image.open(io.BytesIO(fetched.content)).size == (1024, 1024)
    assert pictures[0] != pictures[1]  # seeds 21 and 22
    assert credits(server) == pytest.approx(before - 2 * COST)


def test_b64_json_at_the_nearest_allowed_resolution_says_so(client):
    result = client.images.edit(image=jpeg(), prompt="pop art", model=MODEL,
                                size="1536x1024", response_format="b64_json", quality="low")
    (image,) = result.data
    assert image.url is None
    picture = Image.open(io.BytesIO(base64.b64decode(image.b64_json)))
    assert (picture.format, picture.size) == ("PNG", (1248, 832))
    assert result.size == "1248x832"
    assert any("1536x1024" in w and "1248x832" in w for w in result.model_extra["warnings"])


def test_several_images_remix_the_first_with_the_others_as_style_references(client):
    result = client.images.edit(image=[jpeg(), jpeg("chelsea", 64)], prompt="in this style",
                                model=MODEL, output_format="jpeg", quality="low")
    fetched = httpx.get(result.data[0].url, timeout=10)
    assert fetched.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"size": "huge"}, "size"),
    ({"response_format": "png"}, "response_format"),
    ({"prompt": "   "}, "prompt"),
    ({"mask": jpeg()}, "mask"),
    ({"extra_body": {"image_weight": 0}}, "image_weight"),
])
def test_bad_input_is_openais_400_naming_the_param_and_charges_nothing(server, client, kwargs,
                                                                      param):
    before = credits(server)
    call = {"image": jpeg(), "prompt": "p", "model": MODEL, **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(**call)
    error = caught.value.body
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(f"{param}: ")
    assert credits(server) == pytest.approx(before)


def test_an_image_that_is_not_one_is_a_400_on_image(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=("a.png", b"not an image", "image/png"), prompt="p",
                           model=MODEL)
    assert caught.value.body["param"] == "image"


def test_an_unknown_model_is_openais_404_model_not_found(client):
    with pytest.raises(openai.NotFoundError) as caught:
        client.images.edit(image=jpeg(), prompt="p", model="dall-e-2")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_a_wrong_key_is_openais_401(server):
    client = openai.OpenAI(api_key="sk-wrong", base_url=f"{server.base_url}/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        client.images.edit(image=jpeg(), prompt="p", model=MODEL)
    assert caught.value.code == "invalid_api_key"


def test_a_blocked_prompt_is_openais_content_policy_error_and_refunded(server, client):
    before = credits(server)
    outputs = set((server.data_dir / "outputs").rglob("*"))
    blocked = sorted(DEFAULT_BLOCKLIST)[0]
    with pytest.raises(openai.BadRequestError) as caught:
        client.images.edit(image=jpeg(), prompt=f"a {blocked} scene", model=MODEL, n=2,
                           extra_body={"magic_prompt": "OFF"})
    assert caught.value.status_code == 400
    assert caught.value.code == "content_policy_violation"
    assert credits(server) == pytest.approx(before)
    assert set((server.data_dir / "outputs").rglob("*")) == outputs


def test_get_on_the_route_is_a_405_in_openais_envelope(server):
    response = httpx.get(f"{server.base_url}/v1/images/edits", timeout=10)
    assert response.status_code == 405
    assert response.json()["error"]["message"] == "Method not allowed"


def test_running_out_of_credits_is_insufficient_quota_and_not_retried(start_process):
    proc = start_process(env={"OPENREMIX_DEFAULT_CREDITS": "0.1"}, ready=False).wait_ready(300)
    sent: list[httpx.Request] = []
    client = openai.OpenAI(api_key=TEST_KEY, base_url=f"{proc.base_url}/v1", max_retries=2,
                           http_client=httpx.Client(event_hooks={"request": [sent.append]}))
    with pytest.raises(openai.RateLimitError) as caught:
        client.images.edit(image=jpeg(), prompt="p", model=MODEL, n=3)  # 0.12 > 0.1
    assert caught.value.code == "insufficient_quota"
    assert len(sent) == 1  # x-should-retry: false
    assert len(client.images.edit(image=jpeg(), prompt="p", model=MODEL, n=2).data) == 2
