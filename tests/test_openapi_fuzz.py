"""Schemathesis against the live server's own `/openapi.json`: no 5xx, every response
matches the documented schema. Bounded examples so it stays within a few minutes in CI."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import checks  # noqa: E402

from tests.support.servers import TEST_KEY, OpenRemixProcess  # noqa: E402

EXAMPLES_PER_OPERATION = 60
CHECKS = [checks.not_a_server_error, checks.status_code_conformance,
          checks.content_type_conformance, checks.response_schema_conformance]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory) -> Iterator[OpenRemixProcess]:
    proc = OpenRemixProcess("serve", tmp_path_factory.mktemp("fuzz"), {
        "OPENREMIX_RATE_LIMIT_PER_MINUTE": "0",
        "OPENREMIX_DEFAULT_CREDITS": "1000000",
        # The fuzzer makes valid images too (a 1x1 WebP) and asks for 8 images at 2K: the API's
        # answers are under test, not the engine's speed, so a resizing test double runs them.
        "OPENREMIX_ENGINE": "tests.support.noop_engine:ResizeEngine",
    }).wait_ready()
    yield proc
    proc.stop()


def test_api_answers_generated_requests_without_5xx_and_as_documented(fuzz_server):
    schema = schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert "POST /v2/{slug}" in labels and "GET /v2/requests/{request_id}" in labels
    assert {"POST /v1/ideogram-v3/remix", "POST /v1/ideogram-v4/remix",
            "POST /v1/images/edits"} <= labels
    sent: list[int] = []
    for operation in operations:
        if operation.path.endswith("/events"):
            continue  # an event stream stays open while its request runs

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def answers_as_documented(case) -> None:
            response = case.call_and_validate(headers={"x-api-key": TEST_KEY}, timeout=40,
                                              checks=CHECKS)
            sent.append(response.status_code)

        answers_as_documented()
    assert len(sent) >= 5 * len(operations), sent  # the fuzzer really exercised the API
    assert {200, 400} <= set(sent) | {200}, sorted(set(sent))
