"""The playground page at `/`, used the way a person uses it: in a real headless Chromium
(Debian's `chromium`, installed by scripts/install_system_deps.sh, driven by Playwright) against
a real `openremix serve` on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

from openremix.contract.palettes import PALETTE_PRESETS
from openremix.contract.params import ASPECT_RATIOS, RESOLUTIONS
from tests.support.images import photo
from tests.support.servers import TEST_KEY, OpenRemixProcess, http_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--headless=new", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]
SHOWCASE = Path("/tmp/playground.png")
"""A copy of the main screenshot, where a person can look at it after the run."""

def wait_for(page: Any, predicate: str, timeout: float = 30.0) -> None:
    """Poll a JS predicate from Python. (Playwright's own `wait_for_function` polls with an
    in-page eval, which the page's Content-Security-Policy rightly forbids.)"""
    deadline = time.monotonic() + timeout
    while not page.evaluate(predicate):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {predicate}")
        time.sleep(0.05)


RESULT_LOADED = """() => {
    const img = document.getElementById("result-image");
    return !img.hidden && img.complete && img.naturalWidth > 0;
}"""
# The spread of grey levels of the shown result, drawn into a canvas: a blank or broken image
# has none.
RESULT_CONTRAST = """() => {
    const img = document.getElementById("result-image");
    const canvas = document.createElement("canvas");
    canvas.width = 64; canvas.height = 36;
    const ctx = canvas.getContext("2d");
    ctx.drawImage(img, 0, 0, 64, 36);
    const px = ctx.getImageData(0, 0, 64, 36).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < px.length; i += 4) {
        const grey = (px[i] + px[i + 1] + px[i + 2]) / 3;
        lo = Math.min(lo, grey); hi = Math.max(hi, grey);
    }
    return hi - lo;
}"""


@pytest.fixture(scope="module")
def browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install_system_deps.sh as root")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_playground(browser, base_url: str) -> tuple:
    """A fresh page on the playground, ready to use; also returns the list of page errors."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=base_url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.goto("/")
    page.wait_for_selector("body[data-ready=true]", timeout=10_000)
    return page, problems


@pytest.fixture
def page(browser, server: OpenRemixProcess) -> Iterator:
    page, problems = open_playground(browser, server.base_url)
    yield page
    page.context.close()
    assert problems == []


@pytest.fixture(scope="module")
def chelsea_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "chelsea.png"
    photo("chelsea").save(path)
    return path


def fill_basics(page, image: Path, key: str = TEST_KEY) -> None:
    page.fill("#api-key", key)
    page.set_input_files("#image-file", str(image))
    page.wait_for_selector("#drop-file:not([hidden])")
    page.fill("#prompt", "an oil painting of a cat, warm evening light")


def screenshot(page, path: Path) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000


def test_page_and_its_settings_are_served_without_a_key(server: OpenRemixProcess) -> None:
    page = httpx.get(f"{server.base_url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'src="/playground/app.js"' in page.text
    for name in ("app.js", "form.js", "api.js", "snippets.js", "progress.js", "style.css",
                 "favicon.svg"):
        assert httpx.get(f"{server.base_url}/playground/{name}").status_code == 200, name
    missing = httpx.get(f"{server.base_url}/playground/nope.js")
    assert missing.status_code == 404
    assert "error" in missing.json()

    config = httpx.get(f"{server.base_url}/playground/config.json").json()
    assert config["resolutions"] == list(RESOLUTIONS)
    assert {a["name"]: a["resolution"] for a in config["aspect_ratios"]} == ASPECT_RATIOS
    presets = {p["name"]: [(m["color_hex"], m["color_weight"]) for m in p["members"]]
               for p in config["palette_presets"]}
    assert presets == PALETTE_PRESETS
    assert config["defaults"]["image_weight"] == 50

    paths = httpx.get(f"{server.base_url}/openapi.json").json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/playground") for p in paths)


def test_a_person_remixes_a_photo_and_sees_the_result(
    page, server: OpenRemixProcess, chelsea_png: Path, tmp_path: Path
) -> None:
    fill_basics(page, chelsea_png)
    page.locator("label.aspect", has_text="16:9").click()
    assert page.input_value("#resolution") == ""
    page.locator("#palette-mode label", has_text="Preset").click()
    page.locator(".swatch", has_text="Ember").click()
    page.fill("#seed", "1234")

    curl = page.inner_text("#snippet-code")
    assert f"'{server.base_url}/v2/ideogram-3-remix'" in curl
    assert '-H "x-api-key: $OPENREMIX_API_KEY"' in curl
    assert '"aspect_ratio": "16x9"' in curl
    assert '"name": "EMBER"' in curl
    assert "base64 -w0 'chelsea.png'" in curl  # the photo is read from its file, not inlined
    page.click("#tab-python")
    python = page.inner_text("#snippet-code")
    assert f'base_url="{server.base_url}/v1"' in python
    assert 'data_uri("chelsea.png", "image/png")' in python
    assert "seed=1234," in python
    assert 'api_key=os.environ["OPENREMIX_API_KEY"]' in python
    page.click("#tab-curl")

    page.click("#submit")
    wait_for(page, RESULT_LOADED, timeout=30)
    size = page.evaluate("() => { const i = document.getElementById('result-image');"
                         " return [i.naturalWidth, i.naturalHeight]; }")
    assert size == [1312, 736]
    assert page.evaluate(RESULT_CONTRAST) > 40
    assert page.inner_text("#result-seed") == "1234"
    assert page.inner_text("#result-resolution") == "1312 × 736"
    assert "Completed" in page.inner_text("#progress-text")
    assert page.is_hidden("#error")
    assert page.get_attribute("#result-download", "href").startswith(f"{server.base_url}/outputs/")

    shot = tmp_path / "playground-result.png"
    page.evaluate("document.querySelector('.controls').scrollTop = 0")
    screenshot(page, shot)
    shutil.copyfile(shot, SHOWCASE)

    page.fill("#seed", "")
    page.click("#reuse-seed")
    assert page.input_value("#seed") == "1234"


def test_a_bad_style_code_shows_the_validators_message_and_sends_nothing(
    page, server: OpenRemixProcess, chelsea_png: Path, chelsea_uri: str, tmp_path: Path
) -> None:
    fill_basics(page, chelsea_png)
    submits: list[str] = []
    page.on("request", lambda r: submits.append(r.url) if r.method == "POST" else None)
    page.fill("#style-codes", "A1B2C3D4, nothex!")
    page.click("#submit")

    message = page.inner_text("#error")
    server_says = httpx.post(
        f"{server.base_url}/v2/ideogram-3-remix", headers={"x-api-key": TEST_KEY},
        json={"image": chelsea_uri, "prompt": "cat", "style_codes": ["A1B2C3D4", "nothex!"]},
    ).json()["error"]
    assert message == server_says
    assert message.startswith("style_codes[1]: ")
    assert page.get_attribute("#style-codes", "aria-invalid") == "true"
    assert submits == []
    screenshot(page, tmp_path / "playground-bad-style-code.png")

    # Fixed: the message goes away at once, not at the next submit.
    page.fill("#style-codes", "A1B2C3D4")
    assert page.is_hidden("#error")
    assert page.get_attribute("#style-codes", "aria-invalid") != "true"

    # The contract allows style codes only with style type GENERAL: the field empties and locks.
    page.select_option("#style-type", "REALISTIC")
    assert page.is_disabled("#style-codes")
    assert page.input_value("#style-codes") == ""


def test_the_snippets_run_as_copied(
    page, server: OpenRemixProcess, chelsea_png: Path, tmp_path: Path
) -> None:
    fill_basics(page, chelsea_png)
    prompt = """a "quoted" cat's portrait, $HOME `date` \\ back"""
    page.fill("#prompt", prompt)
    page.locator("#magic-prompt label", has_text="Off").click()
    page.locator("label.aspect", has_text="16:9").click()
    page.locator("#palette-mode label", has_text="Preset").click()
    page.locator(".swatch", has_text="Jungle").click()
    page.fill("#seed", "99")
    shutil.copyfile(chelsea_png, tmp_path / "chelsea.png")

    env = {**os.environ, "OPENREMIX_API_KEY": TEST_KEY}
    if shutil.which("curl"):
        curl = page.inner_text("#snippet-code")
        run = subprocess.run(["bash", "-c", curl], cwd=tmp_path, capture_output=True,
                             text=True, timeout=30, check=True, env=env)
        submitted, _ = json.JSONDecoder().raw_decode(run.stdout)
        result = wait_result(server, submitted["request_id"])
        assert (result["prompt"], result["seed"]) == (prompt, 99)
        assert result["resolution"] == "1312x736"

    page.click("#tab-python")
    python = page.inner_text("#snippet-code")
    run = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=True, env=env)
    output_url, seed = run.stdout.split()
    assert output_url.startswith(f"{server.base_url}/outputs/")
    assert seed == "99"


class WireCapture(BaseHTTPRequestHandler):
    """A loopback stand-in for the Ideogram and OpenAI routes (served by another part of
    openremix): records what the real curl and the real `openai` SDK send, and answers the way
    both wires answer, so the copied snippets run to the end."""

    seen: ClassVar[list[tuple[str, Message, dict[str, list[str | bytes]]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        WireCapture.seen.append((self.path, self.headers, multipart_fields(
            self.headers["content-type"], body)))
        answer = json.dumps({"created": 1, "data": [{"url": "http://127.0.0.1:9/out.png"}]})
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer.encode())

    def log_message(self, *args: Any) -> None:
        pass


def multipart_fields(content_type: str, body: bytes) -> dict[str, list[str | bytes]]:
    """A multipart/form-data body's fields: text as str, files as bytes, in order."""
    message = BytesParser(policy=HTTP).parsebytes(
        f"content-type: {content_type}\r\n\r\n".encode() + body)
    fields: dict[str, list[str | bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True)
        value = data if part.get_filename() else data.decode()
        fields.setdefault(str(name), []).append(value)
    return fields


def test_the_wire_switch_copies_every_wire_and_never_the_key(
    page, server: OpenRemixProcess, chelsea_png: Path, tmp_path: Path
) -> None:
    fill_basics(page, chelsea_png)
    prompt = """@home: a "quoted" cat's portrait;type=x, $HOME `date` \\ back"""
    page.fill("#prompt", prompt)
    page.locator("label.aspect", has_text="16:9").click()
    page.locator("#palette-mode label", has_text="Preset").click()
    page.locator(".swatch", has_text="Jungle").click()
    page.fill("#seed", "99")
    page.fill("#style-codes", "A1B2C3D4")
    shutil.copyfile(chelsea_png, tmp_path / "chelsea.png")
    snippets = {}
    for tab in ("segmind curl", "segmind SDK", "Ideogram curl", "openai SDK"):
        page.locator("[role=tab]", has_text=tab).click()
        snippets[tab] = page.inner_text("#snippet-code")
        page.locator("#snippet").scroll_into_view_if_needed()
        screenshot(page, tmp_path / f"playground-snippet-{tab.replace(' ', '-')}.png")
        assert TEST_KEY not in snippets[tab], tab
        assert "OPENREMIX_API_KEY" in snippets[tab], tab
    ideogram, openai_sdk = snippets["Ideogram curl"], snippets["openai SDK"]
    assert f"-X POST '{server.base_url}/v1/ideogram-v3/remix'" in ideogram
    assert '-H "Api-Key: $OPENREMIX_API_KEY"' in ideogram
    assert "-F image=@'chelsea.png'" in ideogram
    assert (f'OpenAI(base_url="{server.base_url}/v1", api_key=os.environ["OPENREMIX_API_KEY"])'
            in openai_sdk)
    assert 'model="ideogram-3-remix"' in openai_sdk
    assert 'image=open("chelsea.png", "rb")' in openai_sdk

    env = {**os.environ, "OPENREMIX_API_KEY": TEST_KEY}
    photo_bytes = chelsea_png.read_bytes()
    WireCapture.seen = []
    with http_server(WireCapture) as capture:
        if shutil.which("curl"):
            subprocess.run(["bash", "-c", ideogram.replace(server.base_url, capture)],
                           cwd=tmp_path, capture_output=True, timeout=30, check=True, env=env)
            path, headers, fields = WireCapture.seen[-1]
            assert (path, headers["Api-Key"]) == ("/v1/ideogram-v3/remix", TEST_KEY)
            assert fields["image"] == [photo_bytes]
            assert fields["prompt"] == [prompt]  # arrives as typed: no @file, no ;type=
            assert (fields["seed"], fields["aspect_ratio"]) == (["99"], ["16x9"])
            assert fields["style_codes"] == ["A1B2C3D4"]
            assert json.loads(str(fields["color_palette"][0])) == {"name": "JUNGLE"}
        subprocess.run([sys.executable, "-c", openai_sdk.replace(server.base_url, capture)],
                       cwd=tmp_path, capture_output=True, timeout=60, check=True, env=env)
        path, headers, fields = WireCapture.seen[-1]
        assert (path, headers["Authorization"]) == ("/v1/images/edits", f"Bearer {TEST_KEY}")
        assert fields["image"] == [photo_bytes]
        assert (fields["model"], fields["prompt"]) == (["ideogram-3-remix"], [prompt])
        assert (fields["size"], fields["seed"]) == (["1312x736"], ["99"])
        assert json.loads(str(fields["style_codes"][0])) == ["A1B2C3D4"]
        assert json.loads(str(fields["color_palette"][0])) == {"name": "JUNGLE"}


def wait_result(server: OpenRemixProcess, request_id: str) -> dict:
    url = f"{server.base_url}/v2/requests/{request_id}"
    for _ in range(300):
        body = httpx.get(url, headers={"x-api-key": TEST_KEY}).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        time.sleep(0.1)
    raise AssertionError(f"{request_id} did not finish")


# Hands the page an image the way the browser does for a paste or a drop, with a real File.
GIVE_IMAGE = """async ([how, target, name]) => {
    const canvas = document.createElement("canvas");
    canvas.width = 40; canvas.height = 30;
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#c33"; ctx.fillRect(0, 0, 40, 30);
    ctx.fillStyle = "#3c3"; ctx.fillRect(0, 0, 20, 15);
    const blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
    const data = new DataTransfer();
    data.items.add(new File([blob], name, {type: "image/png"}));
    const node = target ? document.querySelector(target) : document;
    const event = how === "paste"
        ? new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true})
        : new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true});
    node.dispatchEvent(event);
}"""


def test_images_arrive_by_paste_and_drop_and_the_contracts_exclusions_hold(page) -> None:
    page.evaluate(GIVE_IMAGE, ["paste", None, "pasted.png"])
    wait_for(page, "() => document.getElementById('image-name').textContent === 'pasted.png'")
    assert page.inner_text("#image-info").startswith("40 × 30")
    page.evaluate(GIVE_IMAGE, ["drop", "#drop-zone", "dropped.png"])
    wait_for(page, "() => document.getElementById('image-name').textContent === 'dropped.png'")

    # Style reference images lock the style codes; removing them unlocks the field.
    page.fill("#style-codes", "A1B2C3D4")
    page.evaluate(GIVE_IMAGE, ["drop", "#refs-zone", "ref.png"])
    page.wait_for_selector("#refs-list .thumb")
    assert page.is_disabled("#style-codes")
    assert page.input_value("#style-codes") == ""
    page.click("#refs-list .thumb-remove")
    assert page.locator("#refs-list .thumb").count() == 0
    assert page.is_enabled("#style-codes")

    # An aspect ratio and a resolution exclude each other.
    page.locator("label.aspect", has_text="4:3").click()
    assert '"aspect_ratio": "4x3"' in page.inner_text("#snippet-code")
    page.select_option("#resolution", "1024x832")
    assert page.locator("input[name=aspect_ratio]:checked").count() == 0
    snippet = page.inner_text("#snippet-code")
    assert '"resolution": "1024x832"' in snippet
    assert "aspect_ratio" not in snippet

    # A preset and custom colours exclude each other too.
    page.locator("#palette-mode label", has_text="Preset").click()
    page.locator(".swatch", has_text="Pastel").click()
    page.locator("#palette-mode label", has_text="Custom").click()
    snippet = page.inner_text("#snippet-code")
    assert '"members"' in snippet
    assert '"name"' not in snippet


def test_the_servers_error_message_is_shown(
    browser, server: OpenRemixProcess, chelsea_png: Path
) -> None:
    page, problems = open_playground(browser, server.base_url)
    fill_basics(page, chelsea_png, key="not-a-key")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "Unauthorized. API key is invalid or may have expired"
    assert page.evaluate("document.activeElement.id") == "api-key"
    page.context.close()
    assert [p for p in problems if "status of 401" not in p] == []
