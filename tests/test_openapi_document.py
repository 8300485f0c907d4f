"""`/openapi.json` of a live `openremix serve`, as tools and people read it: a valid OpenAPI
document (openapi-spec-validator), every `$ref` resolving inside it, every success answer with
its real content type and a schema, the API key schemes declared, and the real answers of a
remix matching what the document says. Every check iterates over the document's own routes, so
a route added later is held to the same rules."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from tests.support.servers import TEST_KEY

METHODS = ("get", "post", "put", "patch", "delete")
KEY_HEADERS = {"SegmindApiKey": "x-api-key", "IdeogramApiKey": "api-key"}


@pytest.fixture(scope="module")
def document(server) -> dict[str, Any]:
    answer = httpx.get(f"{server.base_url}/openapi.json")
    assert answer.status_code == 200
    return answer.json()


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from refs(value)


def test_the_document_is_valid_openapi(document):
    validate(document)  # raises, naming the first problem
    assert document["openapi"].startswith("3.1")


def test_every_reference_resolves_inside_the_document(document):
    schemas = document["components"]["schemas"]
    found = list(refs(document))
    assert found, "the document shares no schemas"
    for ref in found:
        assert ref.startswith("#/components/schemas/"), ref  # never a model's own `$defs`
        assert ref.rsplit("/", 1)[-1] in schemas, f"{ref} does not resolve"
    assert "$defs" not in str(document)


def test_every_success_answer_has_its_content_type_and_a_schema(document):
    for method, path, operation in operations(document):
        success = {code: answer for code, answer in operation["responses"].items()
                   if code.startswith("2")}
        assert success, f"{method.upper()} {path} documents no success answer"
        for code, answer in success.items():
            content = answer.get("content")
            assert content, f"{method.upper()} {path} {code}: no content type"
            for media_type, body in content.items():
                assert body.get("schema"), f"{method.upper()} {path} {code} {media_type}: " \
                                           "empty schema"
    sync = document["paths"]["/v1/{slug}"]["post"]["responses"]["200"]
    assert {"image/jpeg", "image/png", "image/webp"} <= set(sync["content"])
    assert "x-seed-value" in sync["headers"]
    events = document["paths"]["/v2/requests/{request_id}/events"]["get"]["responses"]["200"]
    assert set(events["content"]) == {"text/event-stream"}
    outputs = document["paths"]["/outputs/{key}"]["get"]["responses"]["200"]
    assert "application/json" not in outputs["content"]


def test_request_bodies_name_their_shared_schemas(document):
    body = document["paths"]["/v2/{slug}"]["post"]["requestBody"]["content"]
    assert body["application/json"]["schema"] == {"$ref": "#/components/schemas/RemixRequest"}
    form = body["multipart/form-data"]["schema"]["properties"]
    assert form["image"]["format"] == "binary"
    assert {"ColorPalette", "PaletteMember"} <= set(document["components"]["schemas"])


def _example_path(path: str, operation: dict[str, Any]) -> str:
    for parameter in operation.get("parameters", []):
        if parameter["in"] == "path":
            schema = parameter.get("schema", {})
            value = schema["enum"][0] if "enum" in schema else str(uuid.uuid4())
            path = path.replace("{" + parameter["name"] + "}", value)
    return path


def test_every_keyed_route_declares_its_scheme_and_refuses_a_request_without_a_key(
        server, document):
    schemes = document["components"]["securitySchemes"]
    assert schemes["SegmindApiKey"] == {**schemes["SegmindApiKey"], "type": "apiKey",
                                        "in": "header", "name": "x-api-key"}
    assert schemes["IdeogramApiKey"]["name"] == "Api-Key"
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    keyed = 0
    for method, path, operation in operations(document):
        url = server.base_url + _example_path(path, operation)
        answer = httpx.request(method, url, timeout=30)
        if operation.get("security"):
            keyed += 1
            for requirement in operation["security"]:
                assert set(requirement) <= set(schemes), requirement
            assert answer.status_code == 401, f"{method.upper()} {path}: {answer.status_code}"
        else:
            assert answer.status_code != 401, f"{method.upper()} {path} wants a key but " \
                                              "declares none"
    assert keyed >= 8


def _validator(document: dict[str, Any], schema: dict[str, Any]) -> Draft202012Validator:
    """A JSON Schema validator for `schema`, whose `$ref`s point into the document."""
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(document))
    return Draft202012Validator(schema, registry=registry)


def check_answer(document: dict[str, Any], method: str, path: str,
                 answer: httpx.Response) -> None:
    """The answer's status, content type and (JSON) body are what the document declares."""
    declared = document["paths"][path][method]["responses"]
    assert str(answer.status_code) in declared, f"{path}: {answer.status_code} undeclared"
    content = declared[str(answer.status_code)]["content"]
    media_type = answer.headers["content-type"].split(";")[0]
    assert media_type in content, f"{path}: {media_type} not in {sorted(content)}"
    if media_type == "application/json":
        schema = {"$ref": "urn:doc" + content[media_type]["schema"]["$ref"]}
        errors = list(_validator(document, schema).iter_errors(answer.json()))
        assert not errors, f"{path}: {errors[0].message}"


def test_real_answers_match_the_document(server, document, astronaut_uri):
    headers = {"x-api-key": TEST_KEY}
    body = {"image": astronaut_uri, "prompt": "a mosaic", "rendering_speed": "TURBO",
            "resolution": "512x1536"}
    submitted = httpx.post(f"{server.base_url}/v2/ideogram-3-remix", json=body,
                           headers=headers, timeout=60)
    check_answer(document, "post", "/v2/{slug}", submitted)
    request_id = submitted.json()["request_id"]
    status = httpx.get(f"{server.base_url}/v2/requests/{request_id}/status", headers=headers)
    check_answer(document, "get", "/v2/requests/{request_id}/status", status)
    result = httpx.get(f"{server.base_url}/v2/requests/{request_id}", headers=headers)
    for _ in range(600):
        if result.json()["status"] == "COMPLETED":
            break
        result = httpx.get(f"{server.base_url}/v2/requests/{request_id}", headers=headers)
    check_answer(document, "get", "/v2/requests/{request_id}", result)
    output = httpx.get(result.json()["output"])
    check_answer(document, "get", "/outputs/{key}", output)
    for png in (False, True):
        sync = httpx.post(f"{server.base_url}/v1/ideogram-3-remix", headers=headers, timeout=60,
                          json={**body, "output_format": "png", "base64": png})
        check_answer(document, "post", "/v1/{slug}", sync)
    credits = httpx.get(f"{server.base_url}/v1/get-user-credits", headers=headers)
    check_answer(document, "get", "/v1/get-user-credits", credits)
    for path in ("/healthz", "/readyz"):
        check_answer(document, "get", path, httpx.get(server.base_url + path))
    missing = httpx.get(f"{server.base_url}/v2/requests/{uuid.uuid4()}", headers=headers)
    check_answer(document, "get", "/v2/requests/{request_id}", missing)
