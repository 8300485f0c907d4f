"""Ideogram's own remix wire: `POST /v1/ideogram-v3/remix` and `POST /v1/ideogram-v4/remix`.

As Ideogram's developer documentation states them: a multipart form with the `image` file and
text fields, the key in the `Api-Key` header, a synchronous JSON answer
`{"created", "data": [{"url", "prompt", "resolution", "is_image_safe", "seed", "style_type"}]}`
(a blocked image has `is_image_safe: false` and no URL), errors as `{"error": "<message>"}`
(422 when the prompt or the image failed the safety check).

The fields mean what they mean on Segmind's wire, so they are validated by the one
`RemixRequest` (`parse_remix_request`); this module only says which fields each route takes,
under which names, and the 4.0 route's 2K sizes. `num_images` (1..8) is this wire's own.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from openremix.contract import params
from openremix.contract.errors import InvalidRequest
from openremix.contract.request import RemixRequest, parse_remix_request
from openremix.contract.validation import parse_num_images

IdeogramVersion = Literal["3", "4"]

FILE_FIELDS = frozenset({"image", "style_reference_images"})
"""Form fields that are file uploads."""
LIST_FIELDS = frozenset({"style_codes", "style_reference_images"})
"""Form fields that may repeat (or hold one JSON list)."""
JSON_FIELDS = frozenset({"image_weight", "seed", "num_images", "color_palette", "style_codes"})
"""Text fields decoded as JSON where they parse (numbers, the palette object, a code list)."""

V3_FIELDS = (
    "image", "prompt", "image_weight", "seed", "resolution", "aspect_ratio", "rendering_speed",
    "magic_prompt", "negative_prompt", "num_images", "color_palette", "style_codes", "style_type",
    "style_reference_images",
)  # fmt: skip
"""What `/v1/ideogram-v3/remix` takes (Ideogram's names are ours)."""
V4_FIELDS = ("image", "text_prompt", "image_weight", "seed", "resolution", "rendering_speed",
             "num_images")
"""What `/v1/ideogram-v4/remix` takes: the prompt is `text_prompt`, sizes are the 2K ones."""
_V4_NAMES = {"prompt": "text_prompt"}

UNSUPPORTED = {
    "style_preset": "is not supported by this server (use style_codes or style_type)",
    "character_reference_images": "is not supported by this server",
    "character_reference_images_mask": "is not supported by this server",
}
"""Documented Ideogram fields openremix cannot honour: a clear 400 rather than a silent no-op."""

SAFETY_ERROR = "Prompt or provided image failed the safety check"
"""The 422 message, Ideogram's own words for a blocked prompt or image."""


def parse_ideogram_remix(
    form: dict[str, Any], version: IdeogramVersion
) -> tuple[RemixRequest, int]:
    """Validate a decoded form of the 3.0 or 4.0 route: the request and its `num_images`.

    Raises `InvalidRequest` naming the field under this wire's name (`text_prompt` on 4.0).
    Fields the route does not take are ignored, as Ideogram ignores them.
    """
    for name, rule in UNSUPPORTED.items():
        if form.get(name) not in (None, [], ""):
            raise InvalidRequest(name, rule)
    num_images = parse_num_images(form.get("num_images"))
    if version == "3":
        fields = {k: v for k, v in form.items() if k in V3_FIELDS and k != "num_images"}
        request, _ = parse_remix_request(fields)
        return request, num_images
    fields = {k: v for k, v in form.items() if k in V4_FIELDS and k != "num_images"}
    if "text_prompt" in fields:
        fields["prompt"] = fields.pop("text_prompt")
    fields.setdefault("resolution", params.DEFAULT_RESOLUTION_2K)
    try:
        request, _ = parse_remix_request(fields, resolutions=frozenset(params.RESOLUTIONS_2K))
    except InvalidRequest as exc:
        raise exc.renamed(_V4_NAMES) from None
    return request, num_images


class IdeogramImage(BaseModel):
    """One image of an answer (Ideogram's `ImageGenerationObjectV3`)."""

    url: str | None = Field(description="Where the image is; null when it failed the safety "
                                        "check (is_image_safe false)")
    prompt: str = Field(description="The prompt used, after magic prompt")
    resolution: str
    is_image_safe: bool
    seed: int
    style_type: str | None = None


class IdeogramRemixResponse(BaseModel):
    """The synchronous answer (Ideogram's `ImageGenerationResponseV3`)."""

    created: str = Field(description="When the request was created (ISO 8601 date-time)")
    data: list[IdeogramImage]
    response_type: Literal["url"] | None = Field(
        default=None, description="4.0 route only: always \"url\"")


class IdeogramError(BaseModel):
    """Every error answer of this wire (Ideogram's `GenerateImageSafetyError` shape)."""

    error: str


def form_schema(version: IdeogramVersion) -> dict[str, Any]:
    """The multipart request body of a route, for the OpenAPI document."""
    text = {"type": "string"}
    integer = {"type": "integer"}
    image_file = {"type": "string", "format": "binary",
                  "description": "JPEG, PNG or WebP, at most 10 MB"}
    properties: dict[str, Any] = {
        "image": image_file,
        "image_weight": {**integer, "minimum": 1, "maximum": 100, "default": 50},
        "seed": {**integer, "minimum": 0, "maximum": params.SEED_MAX},
        "rendering_speed": {"type": "string", "enum": list(params.RENDERING_SPEEDS),
                            "default": "DEFAULT"},
        "num_images": {**integer, "minimum": params.NUM_IMAGES_MIN,
                       "maximum": params.NUM_IMAGES_MAX, "default": 1},
    }
    if version == "4":
        properties["text_prompt"] = text
        properties["resolution"] = {"type": "string", "enum": list(params.RESOLUTIONS_2K),
                                    "default": params.DEFAULT_RESOLUTION_2K}
        required = ["image", "text_prompt"]
    else:
        properties.update({
            "prompt": text,
            "resolution": {"type": "string", "enum": list(params.RESOLUTIONS)},
            "aspect_ratio": {"type": "string", "enum": list(params.ASPECT_RATIOS)},
            "magic_prompt": {"type": "string", "enum": list(params.MAGIC_PROMPTS)},
            "negative_prompt": text,
            "color_palette": {"type": "string", "description": "JSON: {\"name\": PRESET} or "
                              "{\"members\": [{\"color_hex\", \"color_weight\"}]}"},
            "style_codes": {"type": "array", "items": {"type": "string",
                                                       "pattern": "^[0-9A-Fa-f]{8}$"}},
            "style_type": {"type": "string", "enum": list(params.STYLE_TYPES)},
            "style_reference_images": {"type": "array", "items": image_file},
        })
        required = ["image", "prompt"]
    return {
        "required": True,
        "content": {"multipart/form-data": {
            "schema": {"type": "object", "properties": properties, "required": required},
            "encoding": {"image": {"contentType": "image/jpeg, image/png, image/webp"}},
        }},
    }
