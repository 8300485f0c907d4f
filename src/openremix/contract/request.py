"""`RemixRequest`: every field and rule of CONTRACT.md §3 for `ideogram-3-remix`.

Entry point for the API: `parse_remix_request(body)`, which returns the validated request and
the warnings for ignored keys, or raises `InvalidRequest(field, rule)` naming the first broken
rule. Leniencies (all normalised, so the validated request holds one spelling only):

- `null` and `[]` mean "not given", at the top level and inside `color_palette`;
- enum strings (`rendering_speed`, `magic_prompt`, `style_type`, `color_palette.name`) are
  accepted in any case and stored uppercase; `output_format` is stored lowercase, "jpg" = "jpeg";
- `resolution` and `aspect_ratio` accept an upper-case "X", `aspect_ratio` also "16:9";
- integers may arrive as whole floats (`50.0`); strings and booleans are never numbers;
- style codes are stored uppercase, palette colours lowercase; an empty `negative_prompt` is None.

The palette models live in `palettes.py` and the rule helpers in `validation.py`; both models
are importable from here too. `canonical_body` gives the one text of a validated request that
idempotency hashes.

`RemixRequest.model_validate(req.model_dump())` round-trips (the worker relies on it): the
"both `aspect_ratio` and `resolution` given" rule needs the raw body and so lives in
`parse_remix_request`; the model itself only rejects a pair that disagrees.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from openremix.contract import params
from openremix.contract.errors import InvalidRequest
from openremix.contract.palettes import ColorPalette, PaletteMember
from openremix.contract.validation import (
    IMAGE_KINDS,
    bounded_text,
    choice,
    drop_absent,
    fail,
    got,
    int_in_range,
    invalid_request_from,
    string_list,
)

__all__ = [
    "ColorPalette",
    "MagicPrompt",
    "PaletteMember",
    "RemixRequest",
    "RenderingSpeed",
    "StyleType",
    "canonical_body",
    "invalid_request_from",
    "parse_remix_request",
]

RenderingSpeed = Literal["TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED"]
MagicPrompt = Literal["AUTO", "ON", "OFF"]
StyleType = Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION", "STYLIZED"]

_RESOLUTION_SET = frozenset(params.RESOLUTIONS)
_ENUMS: dict[str, tuple[str, ...]] = {
    "rendering_speed": params.RENDERING_SPEEDS,
    "magic_prompt": params.MAGIC_PROMPTS,
    "style_type": params.STYLE_TYPES,
}


class RemixRequest(BaseModel):
    """A validated `ideogram-3-remix` request (CONTRACT.md §3, plus the §4 extensions).

    `resolution` always holds the output size: when `aspect_ratio` is given, the resolution it
    maps to. `seed` is None when the client gave none (the API fills one in before queueing).
    """

    model_config = ConfigDict(extra="ignore")

    image: str
    prompt: str
    image_weight: int = 50
    seed: int | None = None
    resolution: str = "1024x1024"
    aspect_ratio: str | None = None
    rendering_speed: RenderingSpeed = "DEFAULT"
    magic_prompt: MagicPrompt = "AUTO"
    negative_prompt: str | None = None
    style_type: StyleType = "GENERAL"
    style_codes: list[str] = []
    style_reference_images: list[str] = []
    color_palette: ColorPalette | None = None
    # extensions (CONTRACT.md §4)
    output_format: Literal["jpeg", "png", "webp"] = "jpeg"
    base64: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the output, after `aspect_ratio` was mapped to `resolution`."""
        w, h = self.resolution.split("x")
        return int(w), int(h)

    @model_validator(mode="before")
    @classmethod
    def _drop_not_given(cls, data: Any) -> Any:
        return drop_absent(data) if isinstance(data, dict) else data

    @field_validator("image", mode="before")
    @classmethod
    def _check_image(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise fail(f"must be a string: {IMAGE_KINDS} (got {got(value)})")
        if not value.strip():
            raise fail(f"must not be empty; give {IMAGE_KINDS}")
        return value.strip()

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> str:
        value = bounded_text(value)
        if not value.strip():
            raise fail("must not be empty")
        return value

    @field_validator("image_weight", mode="before")
    @classmethod
    def _check_image_weight(cls, value: Any) -> int:
        return int_in_range(value, params.IMAGE_WEIGHT_MIN, params.IMAGE_WEIGHT_MAX)

    @field_validator("seed", mode="before")
    @classmethod
    def _check_seed(cls, value: Any) -> int:
        return int_in_range(value, 0, params.SEED_MAX)

    @field_validator("resolution", mode="before")
    @classmethod
    def _check_resolution(cls, value: Any, info: ValidationInfo) -> str:
        # A wire with other sizes (Ideogram 4.0's 2K list) passes them as the context.
        allowed = (info.context or {}).get("resolutions", _RESOLUTION_SET)
        key = value.strip().lower() if isinstance(value, str) else None
        if key not in allowed:
            example = "1024x1024" if "1024x1024" in allowed else sorted(allowed)[0]
            raise fail(
                f"must be one of the {len(allowed)} supported resolutions such as "
                f"{example} (got {got(value)})"
            )
        return key

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _check_aspect_ratio(cls, value: Any) -> str:
        key = value.strip().lower().replace(":", "x") if isinstance(value, str) else None
        if key not in params.ASPECT_RATIOS:
            raise fail(
                f"must be one of the {len(params.ASPECT_RATIOS)} aspect ratios "
                + ", ".join(params.ASPECT_RATIOS)
                + f" (got {got(value)})"
            )
        return key

    @field_validator("rendering_speed", "magic_prompt", "style_type", mode="before")
    @classmethod
    def _check_enum(cls, value: Any, info: ValidationInfo) -> str:
        return choice(value, _ENUMS[str(info.field_name)])

    @field_validator("negative_prompt", mode="before")
    @classmethod
    def _check_negative_prompt(cls, value: Any) -> str | None:
        value = bounded_text(value)
        return value if value.strip() else None

    @field_validator("style_codes", mode="before")
    @classmethod
    def _check_style_codes(cls, value: Any) -> list[str]:
        codes = string_list(value, params.MAX_STYLE_CODES, "codes")
        for i, code in enumerate(codes):
            if not isinstance(code, str) or not params.STYLE_CODE_RE.match(code.strip()):
                raise fail(
                    f"must be a string of 8 hex digits such as 'A1B2C3D4' (got {got(code)})",
                    f"[{i}]",
                )
        return [code.strip().upper() for code in codes]

    @field_validator("style_reference_images", mode="before")
    @classmethod
    def _check_style_reference_images(cls, value: Any) -> list[str]:
        images = string_list(value, params.MAX_STYLE_REFERENCE_IMAGES, "images")
        for i, image in enumerate(images):
            if not isinstance(image, str) or not image.strip():
                raise fail(
                    f"must be a non-empty string: {IMAGE_KINDS} (got {got(image)})", f"[{i}]"
                )
        return [image.strip() for image in images]

    @field_validator("output_format", mode="before")
    @classmethod
    def _check_output_format(cls, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() == "jpg":
            return "jpeg"
        return choice(value, params.OUTPUT_FORMATS, upper=False)

    @field_validator("base64", mode="before")
    @classmethod
    def _check_base64(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise fail(f"must be true or false (got {got(value)})")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> RemixRequest:
        if self.aspect_ratio is not None:
            mapped = params.ASPECT_RATIOS[self.aspect_ratio]
            if "resolution" in self.model_fields_set and self.resolution != mapped:
                raise fail(
                    f"selects {mapped}, which disagrees with resolution "
                    f"{self.resolution}; give one of them",
                    "aspect_ratio",
                )
            self.resolution = mapped
        if self.style_codes and self.style_reference_images:
            raise fail("cannot be combined with style_reference_images", "style_codes")
        if self.style_codes and self.style_type != params.DEFAULT_STYLE_TYPE:
            raise fail(
                f"cannot be combined with style_type {self.style_type}; leave "
                f"style_type out or set it to {params.DEFAULT_STYLE_TYPE}",
                "style_codes",
            )
        return self


def parse_remix_request(
    body: Any, resolutions: frozenset[str] | None = None
) -> tuple[RemixRequest, list[str]]:
    """Validate a decoded JSON body. Returns the request and warnings (unknown keys ignored).

    `resolutions` replaces the 69 sizes of Ideogram 3.0 for a wire that has others.
    Raises `InvalidRequest(field, rule)` for the first broken rule; a pydantic
    `ValidationError` never escapes.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    warnings = [
        f"unknown parameter '{key}' ignored" for key in body if key not in RemixRequest.model_fields
    ]
    given = drop_absent(body)
    if "aspect_ratio" in given and "resolution" in given:
        raise InvalidRequest("aspect_ratio", "cannot be combined with resolution; give one of them")
    try:
        context = None if resolutions is None else {"resolutions": resolutions}
        request = RemixRequest.model_validate(given, context=context)
    except ValidationError as exc:
        raise invalid_request_from(exc) from None
    return request, warnings


def canonical_body(request: RemixRequest) -> str:
    """A stable JSON text of the validated request (sorted keys), for idempotency hashing.

    Two bodies that validate to the same request (e.g. "turbo" and "TURBO") give the same text.
    """
    return json.dumps(
        request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
