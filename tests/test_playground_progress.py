"""The playground while a job runs, in a real headless Chromium against real servers: the time
left counts down, a diffusion run shows live previews, and a run that ends without a result
(cancelled, or refused for its key) leaves no earlier result on the page."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pytest

from tests.test_playground import (
    RESULT_LOADED,
    browser,  # noqa: F401 (a fixture)
    chelsea_png,  # noqa: F401 (a fixture)
    fill_basics,
    open_playground,
    screenshot,
    wait_for,
)

SHOTS = Path(tempfile.gettempdir())
"""Copies of the screenshots, where a person can look at them after the run."""

NO_RESULT = """() => document.getElementById("result-image").hidden
    && document.getElementById("result-details").hidden
    && document.getElementById("result-preview").hidden
    && document.getElementById("result-meta").textContent === ""
    && !document.getElementById("result-placeholder").hidden"""
ETA = """() => {
    const m = /about ([0-9.]+) s left/.exec(document.getElementById("progress-text").textContent);
    return m ? Number(m[1]) : null;
}"""


def keep(path: Path) -> None:
    shutil.copyfile(path, SHOTS / path.name)


def test_the_eta_counts_down_and_cancel_or_a_401_leave_no_old_result(
    browser, start_process, chelsea_png: Path, tmp_path: Path  # noqa: F811
) -> None:
    server = start_process(env={
        "OPENREMIX_ENGINE": "tests.support.noop_engine:SteppedResizeEngine",
        "STEPPED_ENGINE_STEPS": "8", "STEPPED_ENGINE_SECONDS": "0.6"})
    page, problems = open_playground(browser, server.base_url)
    fill_basics(page, chelsea_png)
    page.click("#submit")
    wait_for(page, RESULT_LOADED, timeout=30)
    assert page.is_visible("#result-details")

    # A second run: the time left appears once measured, then counts down between events.
    page.click("#submit")
    wait_for(page, "() => document.getElementById('result-image').hidden")
    wait_for(page, f"() => ({ETA})() !== null", timeout=20)
    first = page.evaluate(ETA)
    time.sleep(0.35)
    second = page.evaluate(ETA)
    assert second is not None and 0 < second < first
    shot = tmp_path / "playground-progress.png"
    screenshot(page, shot)
    keep(shot)
    page.click("#cancel")
    wait_for(page, "() => document.getElementById('progress-text').textContent"
                   ".startsWith('Cancelled')", timeout=20)
    assert page.is_hidden("#cancel") and page.is_hidden("#error")
    assert page.evaluate(NO_RESULT)  # the first run's result is not passed off as this one's
    shot = tmp_path / "playground-after-cancel.png"
    screenshot(page, shot)
    keep(shot)

    page.click("#submit")
    wait_for(page, RESULT_LOADED, timeout=30)
    page.fill("#api-key", "not-a-key")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])")
    assert page.inner_text("#error") == "Unauthorized. API key is invalid or may have expired"
    assert page.evaluate(NO_RESULT)
    shot = tmp_path / "playground-after-401.png"
    screenshot(page, shot)
    keep(shot)
    page.context.close()
    assert [p for p in problems if "status of 401" not in p] == []


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("diffusers")
    from tests.support.tiny_pipelines import build_tiny_pipeline

    return build_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "sd", kind="sd", seed=0)


PREVIEW_SHOWN = """() => {
    const img = document.getElementById("result-preview");
    return !img.hidden && img.complete && img.naturalWidth > 0
        && document.getElementById("preview-badge").textContent.startsWith("Preview · step");
}"""


def test_a_diffusion_run_shows_live_previews_then_the_result(
    browser, start_process, tiny_sd: Path, chelsea_png: Path, tmp_path: Path  # noqa: F811
) -> None:
    server = start_process(env={
        "OPENREMIX_ENGINE": "tests.support.slow_engine:slow_diffusers_engine",
        "OPENREMIX_MODEL": str(tiny_sd), "OPENREMIX_DEVICE": "cpu", "OPENREMIX_MAX_SIDE": "64",
        "SLOW_ENGINE_STEP_SECONDS": "0.4", "OPENREMIX_PREVIEW_SECONDS": "0.2",
        "OMP_NUM_THREADS": "1"}, ready=False).wait_ready(timeout=180)  # torch loads slowly
    page, problems = open_playground(browser, server.base_url)
    fill_basics(page, chelsea_png)
    page.click("#submit")
    wait_for(page, PREVIEW_SHOWN, timeout=60)
    shot = tmp_path / "playground-preview.png"
    screenshot(page, shot)
    keep(shot)
    wait_for(page, RESULT_LOADED, timeout=60)
    assert page.is_hidden("#result-preview") and page.is_hidden("#preview-badge")
    assert "Completed" in page.inner_text("#progress-text")
    page.context.close()
    assert problems == []
