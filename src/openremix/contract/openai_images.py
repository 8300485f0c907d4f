"""The OpenAI images API's edit wire: `POST /v1/images/edits`, as the `openai` SDK sends it.

A multipart form: `image` (one file, or several as `image[]`), `prompt`, `model` (our slug),
`n`, `size`, `response_format` (`url`, the default, or `b64_json`), `quality`,
`output_format`; the key as `Authorization: Bearer`. The answer is OpenAI's
`{"created": <unix>, "data": [{"url"} | {"b64_json"}, ...]}` and errors are OpenAI's envelope
(`api.errors`).

How it maps onto a remix: the first image is the one remixed, further images are style
references; `size` becomes the allowed resolution nearest to it (same aspect first, then the
closest pixel count; `auto` is 1024x1024), and the answer's `size` says which; `quality` picks
the rendering speed; `n` is `num_images`. Our own parameters (`seed`, `image_weight`,
`style_type`, ...) may be sent as extra form fields. Everything is validated by the one
`RemixRequest`, with errors naming OpenAI's fields.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from openremix.contract import params
from openremix.contract.errors import InvalidRequest
from openremix.contract.request import RemixRequest, parse_remix_request
from openremix.contract.validation import got, parse_num_images

FILE_FIELDS = frozenset({"image", "mask"})
LIST_FIELDS = frozenset({"image"})
JSON_FIELDS = frozenset({"n", "image_weight", "seed", "color_palette", "style_codes"})

QUALITY_SPEEDS = {"low": "TURBO", "medium": "DEFAULT", "standard": "DEFAULT", "auto": "DEFAULT",
                  "high": "QUALITY", "hd": "QUALITY"}
"""OpenAI's `quality` -> our `rendering_speed`."""
OUTPUT_FORMATS = ("png", "jpeg", "webp")
DEFAULT_OUTPUT_FORMAT = "png"
"""OpenAI answers PNG unless asked otherwise."""
RESPONSE_FORMATS = ("url", "b64_json")

# Our parameters a client may add (`extra_body`); the rest of OpenAI's fields are mapped above.
_EXTENSION_FIELDS = ("image_weight", "seed", "magic_prompt", "negative_prompt", "style_type",
                     "style_codes", "color_palette", "rendering_speed")
_IGNORED = ("user", "background", "moderation", "input_fidelity", "output_compression",
            "partial_images")
_NAMES = {"num_images": "n", "resolution": "size", "style_reference_images": "image"}
_SIZE_RE = re.compile(r"\A(\d{1,5})x(\d{1,5})\Z")
CONTENT_POLICY_CODE = "content_policy_violation"
"""OpenAI's `code` for a prompt or image its safety system rejected (HTTP 400)."""


@dataclass
class OpenAIEdit:
    """A validated edit: the remix, how many images, and how to answer."""

    request: RemixRequest
    num_images: int
    response_format: Literal["url", "b64_json"]
    model: str | None
    warnings: list[str] = field(default_factory=list)


def nearest_resolution(size: str) -> str:
    """The allowed resolution nearest to `size` ("WxH"): the closest aspect ratio first, then
    the closest pixel count (both compared on a log scale)."""
    width, height = (int(n) for n in size.split("x"))
    aspect, area = math.log(width / height), math.log(width * height)

    def distance(resolution: str) -> tuple[float, float]:
        w, h = (int(n) for n in resolution.split("x"))
        return round(abs(math.log(w / h) - aspect), 3), abs(math.log(w * h) - area)

    return min(params.RESOLUTIONS, key=distance)


def _resolution(size: Any) -> tuple[str, str | None]:
    """(resolution, a warning when `size` was mapped onto another one)."""
    if size is None or (isinstance(size, str) and size.strip().lower() == "auto"):
        return params.DEFAULT_RESOLUTION, None
    text = size.strip().lower() if isinstance(size, str) else ""
    match = _SIZE_RE.match(text)
    if not match or 0 in (int(match[1]), int(match[2])):
        raise InvalidRequest("size", f"must be auto or WIDTHxHEIGHT such as 1024x1024 "
                                     f"(got {got(size)})")
    resolution = nearest_resolution(text)
    if resolution == text:
        return resolution, None
    return resolution, (f"size {text} is not offered; made {resolution}, the nearest allowed "
                        "resolution")


def _choice(form: dict[str, Any], name: str, choices: tuple[str, ...], default: str) -> str:
    value = form.get(name)
    if value is None or value == "":
        return default
    key = value.strip().lower() if isinstance(value, str) else None
    if key not in choices:
        raise InvalidRequest(name, "must be one of " + ", ".join(choices) + f" (got {got(value)})")
    return key


def parse_openai_edit(form: dict[str, Any]) -> OpenAIEdit:
    """Validate a decoded `/v1/images/edits` form. Raises `InvalidRequest` naming OpenAI's
    field (`n`, `size`, `image`, ...)."""
    if form.get("mask") not in (None, [], ""):
        raise InvalidRequest("mask", "is not supported: openremix remixes the whole image")
    if str(form.get("stream", "")).strip().lower() == "true":
        raise InvalidRequest("stream", "is not supported: the answer comes whole")
    images = form.get("image") or []
    if not images:
        raise InvalidRequest("image", "is required: one or more image files")
    response_format = _choice(form, "response_format", RESPONSE_FORMATS, "url")
    output_format = _choice(form, "output_format", OUTPUT_FORMATS, DEFAULT_OUTPUT_FORMAT)
    resolution, warning = _resolution(form.get("size"))
    fields: dict[str, Any] = {k: form[k] for k in _EXTENSION_FIELDS if k in form}
    if form.get("quality") not in (None, ""):
        quality = _choice(form, "quality", tuple(QUALITY_SPEEDS), "auto")
        fields.setdefault("rendering_speed", QUALITY_SPEEDS[quality])
    fields.update(image=images[0], prompt=form.get("prompt"), resolution=resolution,
                  output_format=output_format, style_reference_images=images[1:])
    try:
        num_images = parse_num_images(form.get("n"), "n")
        request, _ = parse_remix_request(fields)
    except InvalidRequest as exc:
        raise exc.renamed(_NAMES) from None
    model = form.get("model")
    warnings = [warning] if warning else []
    warnings += [f"{name} is ignored by this server" for name in _IGNORED
                 if form.get(name) not in (None, "")]
    return OpenAIEdit(request, num_images, response_format,  # type: ignore[arg-type]
                      model.strip() if isinstance(model, str) and model.strip() else None,
                      warnings)


class OpenAIImage(BaseModel):
    """One image of the answer: `url` or `b64_json`, as `response_format` asked."""

    url: str | None = None
    b64_json: str | None = None
    revised_prompt: str | None = Field(default=None, description="The prompt used")


class OpenAIImagesResponse(BaseModel):
    """OpenAI's `ImagesResponse` (plus `warnings`, an extension)."""

    created: int = Field(description="Unix time the request was created")
    data: list[OpenAIImage]
    size: str = Field(description="The resolution made (the allowed one nearest to `size`)")
    output_format: str
    warnings: list[str] = []


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIError(BaseModel):
    """OpenAI's error envelope."""

    error: OpenAIErrorDetail


def form_schema() -> dict[str, Any]:
    """The multipart request body, for the OpenAPI document."""
    image_file = {"type": "string", "format": "binary",
                  "description": "JPEG, PNG or WebP, at most 10 MB"}
    properties = {
        "image": {"oneOf": [image_file, {"type": "array", "items": image_file}],
                  "description": "the image to remix; further images (image[]) are style "
                                 "references"},
        "prompt": {"type": "string", "maxLength": params.MAX_PROMPT_CHARS},
        "model": {"type": "string", "enum": sorted(params.MODEL_SLUGS)},
        "n": {"type": "integer", "minimum": params.NUM_IMAGES_MIN,
              "maximum": params.NUM_IMAGES_MAX, "default": 1},
        "size": {"type": "string", "default": "auto",
                 "description": "auto or WIDTHxHEIGHT; made at the nearest allowed resolution"},
        "response_format": {"type": "string", "enum": list(RESPONSE_FORMATS), "default": "url"},
        "quality": {"type": "string", "enum": list(QUALITY_SPEEDS)},
        "output_format": {"type": "string", "enum": list(OUTPUT_FORMATS), "default": "png"},
    }
    return {
        "required": True,
        "content": {"multipart/form-data": {
            "schema": {"type": "object", "properties": properties,
                       "required": ["image", "prompt"]},
            "encoding": {"image": {"contentType": "image/jpeg, image/png, image/webp"}},
        }},
    }
