"""`RemixRequest`: every field and rule of CONTRACT.md §3 for `ideogram-3-remix`.

SKELETON — field names and types are fixed (other modules rely on them); the rules are filled
in by the contract work. Entry point for the API: `parse_remix_request(body)`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

RenderingSpeed = Literal["TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED"]
MagicPrompt = Literal["AUTO", "ON", "OFF"]
StyleType = Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION", "STYLIZED"]


class PaletteMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    color_hex: str
    color_weight: float = 1.0


class ColorPalette(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    members: list[PaletteMember] | None = None


class RemixRequest(BaseModel):
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


def parse_remix_request(body: Any) -> tuple[RemixRequest, list[str]]:
    """Validate a decoded JSON body. Returns the request and warnings (unknown keys ignored).

    Raises `InvalidRequest(field, rule)` for the first broken rule.
    """
    raise NotImplementedError
