"""What the OpenAPI document (`/openapi.json`) says about every route: request and response
schemas, content types, response headers and the API key schemes.

The routes only point at the declarations here (`responses=`, `openapi_extra=`);
`build_openapi` finishes the document once (shared schemas under `components/schemas`, each
operation's security). The response models describe the JSON bodies `api.responses` builds;
they are documentation only: the routes answer with their own `JSONResponse`.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from openremix.contract.request import RemixRequest


class ErrorBody(BaseModel):
    """Every error answer: a message naming the field and rule, and the request id if any."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "error": "image_weight: must be an integer from 1 to 100",
        "request_id": "3f1c2a9e-8d0b-4c53-9a51-2f8e7b6d4c10"}]})
    error: str
    request_id: str | None = None


class FailedBody(BaseModel):
    """A FAILED request (HTTP 422 on every request route)."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "status": "FAILED", "request_id": "3f1c2a9e-8d0b-4c53-9a51-2f8e7b6d4c10",
        "error": "cancelled", "metrics": {}}]})
    status: str
    request_id: str
    error: str
    metrics: dict[str, Any]


RequestState = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]


class SubmitAnswer(BaseModel):
    """An accepted async submit: poll `status_url`, then read `response_url` (both absolute)."""

    model_config = ConfigDict(extra="allow")
    request_id: str
    status: RequestState
    poll_url: str
    status_url: str
    response_url: str


class Progress(BaseModel):
    """Steps done of a running request (extension)."""

    step: int
    total: int


class StatusBody(BaseModel):
    """The light status: URLs while QUEUED/PROCESSING, `metrics.inference_time` once
    COMPLETED. `queue_position` and `progress` are extensions."""

    model_config = ConfigDict(extra="allow")
    status: RequestState
    request_id: str
    status_url: str | None = None
    response_url: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    queue_position: int | None = None
    progress: Progress | None = None


class OutputImage(BaseModel):
    url: str
    content_type: str
    file_name: str
    file_size: int


class ResultBody(BaseModel):
    """The full result. While the request runs only `status` and `request_id` (plus the
    `queue_position`/`progress` extensions); once COMPLETED every field below."""

    model_config = ConfigDict(extra="allow")
    status: RequestState
    request_id: str
    error: str | None = None
    output: str | None = Field(None, description="Absolute URL of the image.")
    images: list[OutputImage] | None = None
    seed: int | None = None
    prompt: str | None = Field(None, description="The prompt used, after magic prompt.")
    resolution: str | None = None
    style_type: str | None = None
    is_image_safe: bool | None = None
    metrics: dict[str, Any] | None = Field(
        None, description="inference_time, queue_time, total_time (s) and cost."
    )
    warnings: list[str] | None = Field(None, description="Ignored parameters (extension).")
    engine: str | None = None
    details: dict[str, Any] | None = None
    queue_position: int | None = None
    progress: Progress | None = None


class Base64Image(BaseModel):
    """The sync route's answer to `"base64": true` (extension)."""

    model_config = ConfigDict(extra="allow")
    image: str = Field(description="The image bytes, base64.")
    content_type: str | None = None
    seed: int | None = None
    prompt: str | None = None
    request_id: str


class Credits(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    credits: float
    free_credits: float = Field(alias="free-credits")


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ready"]
    queue_depth: int


def _error(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: _error("Missing or invalid API key"),
    404: _error("Unknown model, request or output"),
    429: _error("Rate limited (see Retry-After)"),
    500: _error("Internal error (never a stack trace)"),
}
SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: _error("A parameter broke a rule; the message names it"),
    403: _error("Key not allowed this model"),
    406: _error("Insufficient credits, or a body that is neither JSON nor multipart"),
    409: _error("Idempotency-Key reused with another body"),
    413: _error("Body too large"),
    422: {"model": FailedBody, "description": "The job FAILED (sync route)"},
    503: _error("Overloaded or shutting down (see Retry-After)"),
    504: _error("A sync call outlived its deadline; the job goes on"),
}
READ_ERRORS: dict[int | str, dict[str, Any]] = {
    **AUTH_ERRORS,
    400: _error("A path parameter is malformed"),
    409: _error("The request cannot be cancelled (already COMPLETED)"),
    422: {"model": FailedBody, "description": "The request FAILED"},
    503: _error("Not ready (see Retry-After)"),
}
PUBLIC_ERRORS: dict[int | str, dict[str, Any]] = {
    404: _error("No such output"),
    500: _error("Internal error (never a stack trace); a damaged output says so"),
    503: _error("Not ready: the store cannot take writes or the model is loading (see "
                "Retry-After)"),
}

_BINARY = {"schema": {"type": "string", "format": "binary"}}
IMAGE_CONTENT = {"image/jpeg": _BINARY, "image/png": _BINARY, "image/webp": _BINARY}


def _header(description: str, kind: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": kind}}


SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": SubmitAnswer, "description": "Queued; follow `status_url`"},
}
SYNC_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The image bytes in the requested `output_format` (JPEG by default); "
        "JSON with the image in base64 when the body asked `\"base64\": true`",
        "model": Base64Image,
        "content": IMAGE_CONTENT,
        "headers": {
            "x-request-id": _header("The request id (pollable like an async one)"),
            "x-generation-time": _header("Seconds the engine ran", "number"),
            "x-seed-value": _header("The seed used", "integer"),
            "x-cost": _header("Credits charged", "number"),
            "x-remaining-credits": _header("Credits left for the key", "number"),
        },
    },
}
STATUS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": StatusBody, "description": "QUEUED, PROCESSING or COMPLETED"},
}
RESULT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ResultBody, "description": "COMPLETED with the output, or still running"},
}
CANCEL_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": StatusBody, "description": "Cancelled (a FAILED request stays as it was)"},
}
EVENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `queued`, `processing`, then `completed` or "
        "`failed` (data: the /status body)",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}
OUTPUT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The image bytes", "content": IMAGE_CONTENT},
}
CREDITS_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Credits, "description": "Paid and free credits left"},
}
HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Health, "description": "The process answers"},
}
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Ready, "description": "Ready to take remixes"},
}

_REQUEST_MODELS = (RemixRequest,)
_REF = "#/components/schemas/{model}"
_MULTIPART_FILES = ("image", "style_reference_images")


def _multipart_schema() -> dict[str, Any]:
    """The remix body as form fields: the images as file uploads, the rest as text (JSON for
    lists, objects and numbers)."""
    fields = RemixRequest.model_json_schema(ref_template=_REF)["properties"]
    properties: dict[str, Any] = {name: {"type": "string"} for name in fields}
    properties["image"] = {"type": "string", "format": "binary",
                           "description": "The input image: a file, or a URL / data URI"}
    properties["style_reference_images"] = {
        "type": "array", "items": {"type": "string", "format": "binary"},
        "description": "Style reference images (files)",
    }
    return {"type": "object", "required": ["image", "prompt"], "properties": properties}


REMIX_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": _REF.format(model="RemixRequest")}},
            "multipart/form-data": {"schema": _multipart_schema()},
        },
    }
}
"""`openapi_extra` of the remix submit routes (the body is read by hand, so FastAPI cannot
infer it)."""

SECURITY_SCHEMES: dict[str, dict[str, Any]] = {
    "SegmindApiKey": {"type": "apiKey", "in": "header", "name": "x-api-key",
                      "description": "The Segmind wire's key header (`openremix keys create`)."},
    "IdeogramApiKey": {"type": "apiKey", "in": "header", "name": "Api-Key",
                       "description": "The Ideogram wire's key header."},
    "BearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "`Authorization: Bearer <key>` (the OpenAI wire; accepted "
                   "on the Segmind wire too)."},
}
PUBLIC_PATHS = frozenset({"/outputs/{key}", "/healthz", "/readyz", "/metrics"})
"""Routes that answer without a key (outputs are unguessable URLs)."""


def security_for(path: str) -> list[dict[str, list[str]]]:
    """Which key schemes a route accepts (any one of them), by its wire."""
    if path in PUBLIC_PATHS:
        return []
    if path.startswith("/v1/ideogram-v"):
        return [{"IdeogramApiKey": []}]
    if path.startswith("/v1/images/"):
        return [{"BearerAuth": []}]
    return [{"SegmindApiKey": []}, {"BearerAuth": []}]


def _add_request_models(schema: dict[str, Any]) -> None:
    """Put the request models and the models they use under `components/schemas`, so every
    `$ref` of the document resolves there."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in _REQUEST_MODELS:
        model_schema = model.model_json_schema(ref_template=_REF)
        components.update(model_schema.pop("$defs", {}))
        components[model.__name__] = model_schema


def _add_security(schema: dict[str, Any]) -> None:
    schema.setdefault("components", {})["securitySchemes"] = SECURITY_SCHEMES
    for path, path_item in schema.get("paths", {}).items():
        for operation in path_item.values():
            required = security_for(path)
            if required:
                operation["security"] = required


def document_model_slugs(schema: dict[str, Any], models: frozenset[str]) -> dict[str, Any]:
    """Declare the `{slug}` path parameter as one of the served models (any other -> 404)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "slug" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": sorted(models)}
    return schema


def build_openapi(app: FastAPI, models: frozenset[str]) -> dict[str, Any]:
    """The app's document: FastAPI's, with the request models, key schemes and slugs added."""
    schema = FastAPI.openapi(app)
    _add_request_models(schema)
    _add_security(schema)
    return document_model_slugs(schema, models)
