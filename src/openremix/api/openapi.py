"""What the OpenAPI document says about error answers, so clients and fuzzers can rely on it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class ErrorBody(BaseModel):
    """Every error answer: a message naming the field and rule, and the request id if any."""

    model_config = ConfigDict(extra="allow")
    error: str
    request_id: str | None = None


class FailedBody(BaseModel):
    """A FAILED request (HTTP 422 on every request route)."""

    model_config = ConfigDict(extra="allow")
    status: str
    request_id: str
    error: str
    metrics: dict[str, Any]


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


def document_model_slugs(schema: dict[str, Any], models: frozenset[str]) -> dict[str, Any]:
    """Declare the `{slug}` path parameter as one of the served models (any other -> 404)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("name") == "slug" and parameter.get("in") == "path":
                    parameter["schema"] = {"type": "string", "enum": sorted(models)}
    return schema
