"""Reading a submit body: JSON (the wire), or multipart form data (extension), with a size cap."""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from openremix.api.errors import ApiError

log = logging.getLogger("openremix.api")

# Multipart fields whose text values are JSON (lists, objects, numbers, booleans).
_JSON_FORM_FIELDS = frozenset(
    {"image_weight", "seed", "style_codes", "color_palette", "base64", "style_reference_images"}
)
_FILE_FIELDS = frozenset({"image", "style_reference_images"})


MAX_JSON_DEPTH = 32
"""How deeply a submit body may nest (the deepest real field, a palette member, is 4 levels)."""
_LONG_INTEGER_DIGITS = 64


def _parse_int(text: str) -> int | float:
    """JSON integers as Python ints, except absurdly long ones: those become floats (inf), so
    that validation names the field and its range instead of Python's integer-string limit
    ending the request."""
    return int(text) if len(text) <= _LONG_INTEGER_DIGITS else float(text)


class _TooDeep(ValueError):
    pass


def _load_json(raw: bytes | str) -> Any:
    """`json.loads` that fails only with ValueError: `_TooDeep` past `MAX_JSON_DEPTH` levels
    (also where Python's own recursion limit would stop it), plain ValueError when invalid."""
    try:
        value = json.loads(raw, parse_int=_parse_int)
    except RecursionError:
        raise _TooDeep from None
    except UnicodeDecodeError as exc:
        raise ValueError(str(exc)) from None
    if _depth(value) > MAX_JSON_DEPTH:
        raise _TooDeep
    return value


def parse_json(raw: bytes | str, field: str = "body") -> Any:
    """`raw` as JSON, or a 400 naming `field` and what is wrong with it (never a 500)."""
    try:
        return _load_json(raw)
    except _TooDeep:
        raise ApiError(400, f"{field}: is nested too deeply (at most {MAX_JSON_DEPTH} levels)"
                       ) from None
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ApiError(400, f"{field}: is not valid JSON ({exc})") from None


def _depth(value: Any) -> int:
    """How many levels of lists and objects `value` nests (iteratively: no recursion)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level + 1)
            if deepest > MAX_JSON_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in item)
    return deepest


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"Request body is larger than {limit // (1024 * 1024)} MB")


def _client_gone(request: Request) -> ApiError:
    """A client that hung up mid-body: one info line (it is the client's doing, not a fault of
    ours), and the answer it will never read."""
    log.info("the client disconnected before sending the whole body",
             extra={"request_id": getattr(request.state, "request_id", None)})
    return ApiError(400, "body: the client disconnected before sending all of it")


def _refuse_declared_oversize(request: Request, limit: int) -> None:
    """413 before reading anything when Content-Length already says too much."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)


async def read_limited_body(request: Request, limit: int) -> bytes:
    """The raw body, refused with 413 as soon as it passes `limit` bytes (whatever it claims)."""
    _refuse_declared_oversize(request, limit)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
    except ClientDisconnect:
        raise _client_gone(request) from None
    return b"".join(chunks)


async def read_submit_body(request: Request, limit: int) -> dict[str, Any]:
    """The decoded body as a dict of parameters.

    JSON is expected. A body without a JSON content type is still accepted when it parses as a
    JSON object (curl's `-d` labels JSON as form-urlencoded); anything else answers 406.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _read_multipart(request, limit, SEGMIND_FORM)
    raw = await read_limited_body(request, limit)
    is_json_type = content_type == "application/json" or content_type.endswith("+json")
    try:
        body = parse_json(raw) if raw.strip() else None
    except ApiError:
        if is_json_type:
            raise
        raise ApiError(
            406, "Request body must be JSON (application/json) or multipart/form-data"
        ) from None
    if body is None:
        raise ApiError(400, "body: is empty; send a JSON object with 'image' and 'prompt'")
    if not isinstance(body, dict):
        raise ApiError(400, "body: must be a JSON object")
    return body


@dataclass(frozen=True)
class FormRules:
    """How one wire's multipart form becomes a dict of parameters."""

    files: frozenset[str]
    """Fields that take file uploads (each becomes a data URI, checked like an inline image);
    a file in any other field is a 400."""
    lists: frozenset[str]
    """Fields that collect every value given (repeated fields, or one JSON list)."""
    json_fields: frozenset[str]
    """Text decoded as JSON where it parses (numbers, objects), else kept for validation to
    name the rule."""
    uploads_only: bool = False
    """A wire that takes files only (Ideogram's, OpenAI's): text in a file field is a 400, and
    `name[]` (how OpenAI's SDK names repeated fields) is `name`."""


SEGMIND_FORM = FormRules(files=_FILE_FIELDS, lists=frozenset({"style_reference_images"}),
                         json_fields=_JSON_FORM_FIELDS)
"""Segmind's wire as multipart (an extension): files or text (URLs, base64) in file fields."""


async def read_wire_form(request: Request, limit: int, rules: FormRules) -> dict[str, Any]:
    """A wire's multipart form as a dict (see `FormRules`); anything but multipart/form-data
    answers 400."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise ApiError(400, "body: must be multipart/form-data (got "
                            f"{content_type or 'no content type'})", field="body")
    return await _read_multipart(request, limit, rules)


async def _read_multipart(request: Request, limit: int, rules: FormRules) -> dict[str, Any]:
    _refuse_declared_oversize(request, limit)
    try:
        form = await request.form(max_part_size=limit)
    except ClientDisconnect:
        raise _client_gone(request) from None
    except Exception as exc:
        raise ApiError(400, f"body: is not valid multipart/form-data ({exc})",
                       field="body") from None
    body: dict[str, Any] = {}
    try:
        for raw_name in form:
            name = raw_name[:-2] if rules.uploads_only and raw_name.endswith("[]") else raw_name
            values: list[Any] = []
            for value in form.getlist(raw_name):
                decoded = await _form_value(name, value, rules)
                values.extend(decoded if isinstance(decoded, list) and name in rules.lists
                              else [decoded])
            if name in rules.lists:
                body.setdefault(name, []).extend(values)
            else:
                body[name] = values[-1]
    finally:
        await form.close()
    return body


async def _form_value(name: str, value: str | UploadFile, rules: FormRules) -> Any:
    if isinstance(value, UploadFile):
        if name not in rules.files:
            raise ApiError(400, f"{name}: must be a text field, not a file (files go in "
                                f"{' or '.join(sorted(rules.files))})", field=name)
        data = await value.read()
        mime = value.content_type or "application/octet-stream"
        if not mime.startswith("image/"):
            mime = "image/png"  # decoding checks the real format later
        return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
    if rules.uploads_only and name in rules.files:
        raise ApiError(400, f"{name}: must be a file upload (JPEG, PNG or WebP)", field=name)
    if name in rules.json_fields:
        try:
            return _load_json(value)
        except _TooDeep:
            return parse_json(value, name)  # the 400 that says so
        except ValueError:
            return value  # let validation name the rule (e.g. a bare URL for references)
    return value
