"""The playground: a plain HTML/CSS/JS page at `/` for trying the API in a browser.

The page's files ship as package data in `api/static/`; everything it needs (the sizes, enums,
limits and palette colours of CONTRACT.md §3) comes from `/playground/config.json`, built here
from `contract/` so the page never repeats those values. No route here needs an API key: the page
sends the key the person types with each API call it makes.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from openremix.api.errors import ApiError
from openremix.contract import params
from openremix.contract.palettes import PALETTE_PRESETS
from openremix.contract.request import RemixRequest

router = APIRouter(include_in_schema=False)

_MEDIA_TYPES = {
    "html": "text/html; charset=utf-8",
    "js": "text/javascript; charset=utf-8",
    "css": "text/css; charset=utf-8",
    "svg": "image/svg+xml",
    "png": "image/png",
    "ico": "image/x-icon",
}
# Small files, always revalidated: a new version of the package shows at the next reload.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}
# The page loads only its own files and talks only to this server; images may come from
# anywhere (an input given by URL, outputs under another public base URL).
_PAGE_POLICY = (
    "default-src 'self'; img-src * data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@cache
def _static_files() -> dict[str, bytes]:
    """The page's files by name, read once from the package (works from a wheel or a zip)."""
    folder = resources.files("openremix.api") / "static"
    return {
        entry.name: entry.read_bytes()
        for entry in folder.iterdir()
        if entry.is_file() and entry.name.rsplit(".", 1)[-1] in _MEDIA_TYPES
    }


def _static(name: str, headers: dict[str, str] | None = None) -> Response:
    data = _static_files().get(name)
    if data is None:
        raise ApiError(404, f"Playground file {name} not found")
    media_type = _MEDIA_TYPES[name.rsplit(".", 1)[-1]]
    return Response(data, media_type=media_type, headers={**_HEADERS, **(headers or {})})


def _default(field: str) -> Any:
    return RemixRequest.model_fields[field].default


def playground_config() -> dict[str, Any]:
    """Everything the page needs to draw its controls and check them, from `contract/`."""
    return {
        "model": params.MODEL_SLUG,
        "resolutions": list(params.RESOLUTIONS),
        "aspect_ratios": [
            {"name": name, "resolution": resolution}
            for name, resolution in params.ASPECT_RATIOS.items()
        ],
        "enums": {
            "rendering_speed": list(params.RENDERING_SPEEDS),
            "magic_prompt": list(params.MAGIC_PROMPTS),
            "style_type": list(params.STYLE_TYPES),
            "output_format": list(params.OUTPUT_FORMATS),
        },
        "defaults": {
            field: _default(field)
            for field in (
                "image_weight", "resolution", "rendering_speed", "magic_prompt", "style_type",
                "output_format",
            )
        },
        "style_codes_style_type": params.DEFAULT_STYLE_TYPE,
        # The same rule as the server's, in the syntax of a JavaScript RegExp (flag "i").
        "style_code_pattern": params.STYLE_CODE_RE.pattern.replace(r"\A", "^").replace(
            r"\Z", "$"
        ),
        "limits": {
            "image_weight_min": params.IMAGE_WEIGHT_MIN,
            "image_weight_max": params.IMAGE_WEIGHT_MAX,
            "seed_max": params.SEED_MAX,
            "prompt_chars": params.MAX_PROMPT_CHARS,
            "style_codes": params.MAX_STYLE_CODES,
            "style_reference_images": params.MAX_STYLE_REFERENCE_IMAGES,
            "style_reference_bytes": params.MAX_STYLE_REFERENCE_BYTES,
            "image_bytes": params.MAX_IMAGE_BYTES,
            "image_side": params.MAX_IMAGE_SIDE,
            "palette_members_min": params.PALETTE_MEMBERS_MIN,
            "palette_members_max": params.PALETTE_MEMBERS_MAX,
            "color_weight_min": params.COLOR_WEIGHT_MIN,
            "color_weight_max": params.COLOR_WEIGHT_MAX,
        },
        "palette_presets": [
            {
                "name": name,
                "members": [
                    {"color_hex": color_hex, "color_weight": weight}
                    for color_hex, weight in PALETTE_PRESETS[name]
                ],
            }
            for name in params.PALETTE_PRESET_NAMES
        ],
    }


@router.get("/")
async def playground_page() -> Response:
    return _static("index.html", {"Content-Security-Policy": _PAGE_POLICY})


@router.get("/playground/config.json")
async def playground_config_json() -> JSONResponse:
    return JSONResponse(playground_config(), headers=_HEADERS)


@router.get("/playground/{name}")
async def playground_file(name: str) -> Response:
    return _static(name)
