"""How the contract's rules are written and reported.

Field validators raise `fail(rule)`, a pydantic error of our own type that carries the rule in
words; `invalid_request_from` turns the first error of a `ValidationError` (ours or pydantic's
own, such as a missing field) into `InvalidRequest(field, rule)`. The small checks that several
fields share (`whole_int`, `choice`, ...) live here so each rule is written once.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from openremix.contract import params
from openremix.contract.errors import InvalidRequest

RULE_ERROR = "openremix_rule"
"""pydantic error type of our own rules; its ctx holds `rule` and a relative `path`."""

IMAGE_KINDS = "an http(s) URL, a data:image/...;base64, URI or bare base64"
"""What an image string may be, for messages."""


def fail(rule: str, path: str = "") -> PydanticCustomError:
    """An error for pydantic to collect; `path` extends the location (".x" or "[i]")."""
    return PydanticCustomError(RULE_ERROR, "{rule}", {"rule": rule, "path": path})


def got(value: Any) -> str:
    """A short repr of an offending value for messages."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_absent(value: Any) -> bool:
    return value is None or (isinstance(value, list) and not value)


def drop_absent(data: dict[str, Any]) -> dict[str, Any]:
    """`null` and `[]` mean "not given" (CONTRACT.md §3)."""
    return {k: v for k, v in data.items() if not is_absent(v)}


def reject_unknown_keys(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    unknown = [k for k in data if k not in allowed]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        word = "key" if len(unknown) == 1 else "keys"
        raise fail(f"unknown {word} {names}; allowed keys are " + ", ".join(allowed))


def object_with_keys(data: Any, keys: tuple[str, ...], shape: str) -> Any:
    """A nested object's common checks: a JSON object, absent values dropped, no other keys."""
    if isinstance(data, BaseModel):
        return data
    if not isinstance(data, dict):
        raise fail(f"must be an object{shape} (got {got(data)})")
    data = drop_absent(data)
    reject_unknown_keys(data, keys)
    return data


def whole_int(value: Any, rule: str) -> int:
    """An int, or a float with no fraction; never a bool or a string."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise fail(f"{rule} (got {got(value)})")
    return value


def int_in_range(value: Any, low: int, high: int) -> int:
    """A whole number from `low` to `high` (see `whole_int`)."""
    rule = f"must be an integer from {low} to {high}"
    number = whole_int(value, rule)
    if not low <= number <= high:
        raise fail(f"{rule} (got {number})")
    return number


def parse_num_images(value: Any, field: str = "num_images") -> int:
    """How many images a request asks for (absent -> 1); `field` is the wire's name for it.

    Raises `InvalidRequest` naming `field` and the range.
    """
    if is_absent(value):
        return 1
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())  # a form field arrives as text
    rule = f"must be an integer from {params.NUM_IMAGES_MIN} to {params.NUM_IMAGES_MAX}"
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(field, f"{rule} (got {got(value)})")
    if not params.NUM_IMAGES_MIN <= value <= params.NUM_IMAGES_MAX:
        raise InvalidRequest(field, f"{rule} (got {value})")
    return value


def choice(value: Any, choices: tuple[str, ...], upper: bool = True) -> str:
    """`value` matched case-insensitively against `choices`."""
    key = value.strip() if isinstance(value, str) else None
    key = key and (key.upper() if upper else key.lower())
    if key not in choices:
        raise fail("must be one of " + ", ".join(choices) + f" (got {got(value)})")
    return key


def bounded_text(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"must be a string (got {got(value)})")
    if len(value) > params.MAX_PROMPT_CHARS:
        raise fail(f"must be at most {params.MAX_PROMPT_CHARS:,} characters (got {len(value):,})")
    return value


def string_list(value: Any, max_items: int, noun: str) -> list[Any]:
    if not isinstance(value, list):
        raise fail(f"must be a list of strings (got {got(value)})")
    if len(value) > max_items:
        raise fail(f"may hold at most {max_items} {noun} (got {len(value)})")
    return value


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
    "image": f"is required: {IMAGE_KINDS}",
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
    if error["type"] == RULE_ERROR:
        return InvalidRequest(_location(error["loc"], str(ctx.get("path", ""))), str(ctx["rule"]))
    field = _location(error["loc"], "")
    if error["type"] == "missing" and field in _REQUIRED_HINTS:
        return InvalidRequest(field, _REQUIRED_HINTS[field])
    if error["type"] == "literal_error":
        return InvalidRequest(field, f"must be one of {ctx.get('expected', '')}")
    return InvalidRequest(field, _TYPE_RULES.get(error["type"].split("_")[0], str(error["msg"])))
