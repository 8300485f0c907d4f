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
from pydantic_core import PydanticCustomError

from openremix.contract import params
from openremix.contract.errors import InvalidRequest

RenderingSpeed = Literal["TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED"]
MagicPrompt = Literal["AUTO", "ON", "OFF"]
StyleType = Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION", "STYLIZED"]

_RULE = "openremix_rule"
"""pydantic error type of our own rules; its ctx holds `rule` and a relative `path`."""

_IMAGE_KINDS = "an http(s) URL, a data:image/...;base64, URI or bare base64"
_MEMBERS = f"{params.PALETTE_MEMBERS_MIN} to {params.PALETTE_MEMBERS_MAX} colours"
_RESOLUTION_SET = frozenset(params.RESOLUTIONS)
_ENUMS: dict[str, tuple[str, ...]] = {
    "rendering_speed": params.RENDERING_SPEEDS,
    "magic_prompt": params.MAGIC_PROMPTS,
    "style_type": params.STYLE_TYPES,
}


def _fail(rule: str, path: str = "") -> PydanticCustomError:
    """An error for pydantic to collect; `path` extends the location (".x" or "[i]")."""
    return PydanticCustomError(_RULE, "{rule}", {"rule": rule, "path": path})


def _got(value: Any) -> str:
    """A short repr of an offending value for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value)


def _drop_absent(data: dict[str, Any]) -> dict[str, Any]:
    """`null` and `[]` mean "not given" (CONTRACT.md §3)."""
    return {k: v for k, v in data.items() if not _is_absent(v)}


def _reject_unknown_keys(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        word = "key" if len(unknown) == 1 else "keys"
        raise _fail(f"unknown {word} {names}; allowed keys are " + ", ".join(allowed))


def _whole_int(value: Any, rule: str) -> int:
    """An int, or a float with no fraction; never a bool or a string."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{rule} (got {_got(value)})")
    return value


def _choice(value: Any, choices: tuple[str, ...], upper: bool = True) -> str:
    """`value` matched case-insensitively against `choices`."""
    key = value.strip() if isinstance(value, str) else None
    key = key and (key.upper() if upper else key.lower())
    if key not in choices:
        raise _fail("must be one of " + ", ".join(choices) + f" (got {_got(value)})")
    return key


def _bounded_text(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail(f"must be a string (got {_got(value)})")
    if len(value) > params.MAX_PROMPT_CHARS:
        raise _fail(f"must be at most {params.MAX_PROMPT_CHARS:,} characters (got {len(value):,})")
    return value


def _string_list(value: Any, max_items: int, noun: str) -> list[Any]:
    if not isinstance(value, list):
        raise _fail(f"must be a list of strings (got {_got(value)})")
    if len(value) > max_items:
        raise _fail(f"may hold at most {max_items} {noun} (got {len(value)})")
    return value


def _object_with_keys(data: Any, keys: tuple[str, ...], shape: str) -> Any:
    """A palette object's common checks: a JSON object, absent values dropped, no other keys."""
    if isinstance(data, BaseModel):
        return data
    if not isinstance(data, dict):
        raise _fail(f"must be an object{shape} (got {_got(data)})")
    data = _drop_absent(data)
    _reject_unknown_keys(data, keys)
    return data


class PaletteMember(BaseModel):
    """One colour of a custom palette: "#rrggbb" (stored lowercase) and a weight 0.05..1.0."""

    model_config = ConfigDict(extra="forbid")
    color_hex: str
    color_weight: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        return _object_with_keys(
            data, ("color_hex", "color_weight"),
            ' like {"color_hex": "#rrggbb", "color_weight": 0.5}',
        )

    @field_validator("color_hex", mode="before")
    @classmethod
    def _check_hex(cls, value: Any) -> str:
        if not isinstance(value, str) or not params.COLOR_HEX_RE.match(value.strip()):
            raise _fail(f"must be a colour written #rrggbb, e.g. #1a2b3c (got {_got(value)})")
        return value.strip().lower()

    @field_validator("color_weight", mode="before")
    @classmethod
    def _check_weight(cls, value: Any) -> float:
        rule = f"must be a number from {params.COLOR_WEIGHT_MIN} to {params.COLOR_WEIGHT_MAX}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _fail(f"{rule} (got {_got(value)})")
        if not params.COLOR_WEIGHT_MIN <= value <= params.COLOR_WEIGHT_MAX:  # NaN fails too
            raise _fail(f"{rule} (got {_got(value)})")
        return float(value)


class ColorPalette(BaseModel):
    """Exactly one of `name` (a preset, stored uppercase) or `members` (1..8 colours)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    members: list[PaletteMember] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        data = _object_with_keys(
            data, ("name", "members"), ': {"name": PRESET} or {"members": [...]}'
        )
        if isinstance(data, BaseModel):
            return data
        if "name" in data and "members" in data:
            raise _fail("give either name or members, not both")
        if "name" not in data and "members" not in data:
            raise _fail(
                "must give name (one of "
                + ", ".join(params.PALETTE_PRESET_NAMES)
                + f") or members (a list of {_MEMBERS})"
            )
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> str:
        return _choice(value, params.PALETTE_PRESET_NAMES)

    @field_validator("members", mode="before")
    @classmethod
    def _check_members(cls, value: Any) -> list[Any]:
        rule = f"must be a list of {_MEMBERS}"
        if not isinstance(value, list):
            raise _fail(f"{rule} (got {_got(value)})")
        if not params.PALETTE_MEMBERS_MIN <= len(value) <= params.PALETTE_MEMBERS_MAX:
            raise _fail(f"{rule} (got {len(value)})")
        return value


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
        return _drop_absent(data) if isinstance(data, dict) else data

    @field_validator("image", mode="before")
    @classmethod
    def _check_image(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise _fail(f"must be a string: {_IMAGE_KINDS} (got {_got(value)})")
        if not value.strip():
            raise _fail(f"must not be empty; give {_IMAGE_KINDS}")
        return value.strip()

    @field_validator("prompt", mode="before")
    @classmethod
    def _check_prompt(cls, value: Any) -> str:
        value = _bounded_text(value)
        if not value.strip():
            raise _fail("must not be empty")
        return value

    @field_validator("image_weight", mode="before")
    @classmethod
    def _check_image_weight(cls, value: Any) -> int:
        rule = f"must be an integer from {params.IMAGE_WEIGHT_MIN} to {params.IMAGE_WEIGHT_MAX}"
        number = _whole_int(value, rule)
        if not params.IMAGE_WEIGHT_MIN <= number <= params.IMAGE_WEIGHT_MAX:
            raise _fail(f"{rule} (got {number})")
        return number

    @field_validator("seed", mode="before")
    @classmethod
    def _check_seed(cls, value: Any) -> int:
        rule = f"must be an integer from 0 to {params.SEED_MAX}"
        number = _whole_int(value, rule)
        if not 0 <= number <= params.SEED_MAX:
            raise _fail(f"{rule} (got {number})")
        return number

    @field_validator("resolution", mode="before")
    @classmethod
    def _check_resolution(cls, value: Any) -> str:
        key = value.strip().lower() if isinstance(value, str) else None
        if key not in _RESOLUTION_SET:
            raise _fail(
                f"must be one of the {len(params.RESOLUTIONS)} supported resolutions such as "
                f"1024x1024 (got {_got(value)})"
            )
        return key

    @field_validator("aspect_ratio", mode="before")
    @classmethod
    def _check_aspect_ratio(cls, value: Any) -> str:
        key = value.strip().lower().replace(":", "x") if isinstance(value, str) else None
        if key not in params.ASPECT_RATIOS:
            raise _fail(
                f"must be one of the {len(params.ASPECT_RATIOS)} aspect ratios "
                + ", ".join(params.ASPECT_RATIOS)
                + f" (got {_got(value)})"
            )
        return key

    @field_validator("rendering_speed", "magic_prompt", "style_type", mode="before")
    @classmethod
    def _check_enum(cls, value: Any, info: ValidationInfo) -> str:
        return _choice(value, _ENUMS[str(info.field_name)])

    @field_validator("negative_prompt", mode="before")
    @classmethod
    def _check_negative_prompt(cls, value: Any) -> str | None:
        value = _bounded_text(value)
        return value if value.strip() else None

    @field_validator("style_codes", mode="before")
    @classmethod
    def _check_style_codes(cls, value: Any) -> list[str]:
        codes = _string_list(value, params.MAX_STYLE_CODES, "codes")
        for i, code in enumerate(codes):
            if not isinstance(code, str) or not params.STYLE_CODE_RE.match(code.strip()):
                raise _fail(
                    f"must be a string of 8 hex digits such as 'A1B2C3D4' (got {_got(code)})",
                    f"[{i}]",
                )
        return [code.strip().upper() for code in codes]

    @field_validator("style_reference_images", mode="before")
    @classmethod
    def _check_style_reference_images(cls, value: Any) -> list[str]:
        images = _string_list(value, params.MAX_STYLE_REFERENCE_IMAGES, "images")
        for i, image in enumerate(images):
            if not isinstance(image, str) or not image.strip():
                raise _fail(
                    f"must be a non-empty string: {_IMAGE_KINDS} (got {_got(image)})", f"[{i}]"
                )
        return [image.strip() for image in images]

    @field_validator("output_format", mode="before")
    @classmethod
    def _check_output_format(cls, value: Any) -> str:
        if isinstance(value, str) and value.strip().lower() == "jpg":
            return "jpeg"
        return _choice(value, params.OUTPUT_FORMATS, upper=False)

    @field_validator("base64", mode="before")
    @classmethod
    def _check_base64(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _fail(f"must be true or false (got {_got(value)})")
        return value

    @model_validator(mode="after")
    def _check_combinations(self) -> RemixRequest:
        if self.aspect_ratio is not None:
            mapped = params.ASPECT_RATIOS[self.aspect_ratio]
            if "resolution" in self.model_fields_set and self.resolution != mapped:
                raise _fail(
                    f"selects {mapped}, which disagrees with resolution "
                    f"{self.resolution}; give one of them",
                    "aspect_ratio",
                )
            self.resolution = mapped
        if self.style_codes and self.style_reference_images:
            raise _fail("cannot be combined with style_reference_images", "style_codes")
        if self.style_codes and self.style_type != params.DEFAULT_STYLE_TYPE:
            raise _fail(
                f"cannot be combined with style_type {self.style_type}; leave "
                f"style_type out or set it to {params.DEFAULT_STYLE_TYPE}",
                "style_codes",
            )
        return self


_TYPE_RULES: dict[str, str] = {  # pydantic's error type, up to its first "_"
    "missing": "is required",
    "string": "must be a string",
    "int": "must be an integer",
    "float": "must be a number",
    "bool": "must be true or false",
    "list": "must be a list",
    "model": "must be a JSON object",
    "dict": "must be a JSON object",
    "extra": "is not an allowed key",
}
_REQUIRED_HINTS: dict[str, str] = {
    "image": f"is required: {_IMAGE_KINDS}",
    "prompt": "is required: the text that describes the remix",
}


def _location(loc: tuple[int | str, ...], extra: str) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if extra and not extra.startswith("["):
        extra = f".{extra}" if path else extra
    return (path + extra) or "body"


def invalid_request_from(exc: ValidationError) -> InvalidRequest:
    """The first error of a pydantic `ValidationError` as our `InvalidRequest`."""
    error = exc.errors(include_url=False)[0]
    ctx = error.get("ctx") or {}
    if error["type"] == _RULE:
        return InvalidRequest(_location(error["loc"], str(ctx.get("path", ""))), str(ctx["rule"]))
    field = _location(error["loc"], "")
    if error["type"] == "missing" and field in _REQUIRED_HINTS:
        return InvalidRequest(field, _REQUIRED_HINTS[field])
    if error["type"] == "literal_error":
        return InvalidRequest(field, f"must be one of {ctx.get('expected', '')}")
    return InvalidRequest(field, _TYPE_RULES.get(error["type"].split("_")[0], str(error["msg"])))


def parse_remix_request(body: Any) -> tuple[RemixRequest, list[str]]:
    """Validate a decoded JSON body. Returns the request and warnings (unknown keys ignored).

    Raises `InvalidRequest(field, rule)` for the first broken rule; a pydantic
    `ValidationError` never escapes.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("body", "must be a JSON object")
    warnings = [
        f"unknown parameter '{key}' ignored" for key in body if key not in RemixRequest.model_fields
    ]
    given = _drop_absent(body)
    if "aspect_ratio" in given and "resolution" in given:
        raise InvalidRequest("aspect_ratio", "cannot be combined with resolution; give one of them")
    try:
        request = RemixRequest.model_validate(given)
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
