"""The API docs pages (`/docs`: Swagger UI, `/redoc`: ReDoc) in a real headless Chromium
against a real `openremix serve`, with the network closed: Chromium resolves no host but
loopback, and every request the page makes is recorded, so a page that still wants a CDN (or
Swagger UI's public validator, or web fonts) fails here. Every operation of `/openapi.json` must
be drawn, opened without a resolver error, and the Authorize dialog must offer the key schemes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.support.servers import OpenRemixProcess
from tests.test_playground import CHROMIUM, CHROMIUM_ARGS, wait_for

# Closes the network for the whole browser: every name but loopback fails to resolve.
OFFLINE_ARGS = [*CHROMIUM_ARGS, "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
SCREENSHOTS = Path("/tmp")
METHODS = ("get", "post", "put", "patch", "delete")


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenRemixProcess]:
    """`openremix serve` without workers: the docs need no model, so no wait for one."""
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("docs"),
                            {"OPENREMIX_WORKERS": "0"}).wait_ready()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def offline_browser() -> Iterator:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: run scripts/install_system_deps.sh as root")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is missing: pip install -e '.[test]'"
    )
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=OFFLINE_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def operations(docs_server) -> list[tuple[str, str, str]]:
    """(METHOD, path, summary) of every operation the live document has."""
    document = httpx.get(f"{docs_server.base_url}/openapi.json").json()
    return [(method.upper(), path, item[method].get("summary", ""))
            for path, item in document["paths"].items() for method in METHODS if method in item]


def open_offline(browser: Any, url: str) -> tuple[Any, list[str], list[str]]:
    """A page on `url`; also the list of page errors and of requests to other hosts (refused)."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    elsewhere: list[str] = []

    def guard(route: Any) -> None:
        host = urlsplit(route.request.url).hostname
        if route.request.url.startswith(("data:", "blob:")) or host in ("127.0.0.1", "::1"):
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    page = context.new_page()
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    page.on("requestfailed", lambda request: problems.append(f"failed: {request.url}"))
    page.goto(url)
    return page, problems, elsewhere


def test_the_network_really_is_closed(offline_browser):
    page, _, elsewhere = open_offline(offline_browser, "about:blank")
    # The route guard refuses it, and were it not there the resolver would fail it too.
    result = page.evaluate("""() => fetch("https://cdn.jsdelivr.net/npm/x").then(
        () => "reached", () => "refused")""")
    assert result == "refused"
    assert elsewhere == ["https://cdn.jsdelivr.net/npm/x"]
    page.context.close()


def test_swagger_ui_renders_every_route_offline_without_an_error(
        docs_server, offline_browser, operations):
    page, problems, elsewhere = open_offline(offline_browser, f"{docs_server.base_url}/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    drawn = page.evaluate("""() => [...document.querySelectorAll(".opblock")].map(block => [
        block.querySelector(".opblock-summary-method").textContent.trim(),
        block.querySelector(".opblock-summary-path").getAttribute("data-path")])""")
    assert sorted(map(tuple, drawn)) == sorted((m, p) for m, p, _ in operations)
    page.screenshot(path=str(SCREENSHOTS / "docs-swagger.png"))
    # Open every operation: Swagger UI resolves its schemas only then, and shows a resolver
    # error (e.g. "Could not resolve reference") in its error box.
    for summary in page.query_selector_all(".opblock-summary-control"):
        summary.click()
    wait_for(page, f"""() => document.querySelectorAll(".opblock.is-open .responses-table")
        .length === {len(operations)}""")
    page.wait_for_timeout(500)
    assert page.query_selector(".errors-wrapper") is None, page.inner_text(".errors-wrapper")
    assert "Could not resolve" not in page.inner_text("body")
    sync = page.locator(".opblock", has=page.locator("[data-path='/v1/{slug}']"))
    assert "image/jpeg" in sync.inner_text()
    sync.locator("tr.response[data-code='200']").scroll_into_view_if_needed()
    page.screenshot(path=str(SCREENSHOTS / "docs-swagger-sync.png"))
    page.click("button.authorize")
    dialog = page.inner_text(".dialog-ux")
    for scheme in ("SegmindApiKey", "IdeogramApiKey", "BearerAuth", "x-api-key", "Api-Key"):
        assert scheme in dialog
    page.screenshot(path=str(SCREENSHOTS / "docs-authorize.png"))
    assert elsewhere == []
    assert problems == []
    page.context.close()


def test_redoc_renders_every_route_offline(docs_server, offline_browser, operations):
    page, problems, elsewhere = open_offline(offline_browser, f"{docs_server.base_url}/redoc")
    page.wait_for_selector("[data-section-id^='tag/'], [data-section-id^='operation/']",
                           timeout=30_000)
    text = page.inner_text("body")
    assert "Something went wrong" not in text
    for _, _, summary in operations:
        assert summary in text, summary
    page.screenshot(path=str(SCREENSHOTS / "docs-redoc.png"))
    assert elsewhere == []
    assert problems == []
    page.context.close()
