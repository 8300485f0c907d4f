"""The colour palette of CONTRACT.md §3: its wire models, the presets as colours, `palette_colors`.

`ColorPalette` is either a preset `name` or custom `members`. Each preset is 4-6 ("#rrggbb",
weight) members picked so that its name is evident in the output. Engines read palettes only
through `palette_colors`, which resolves a preset or custom members to RGB with weights that
sum to 1.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from openremix.contract import params
from openremix.contract.validation import choice, fail, got, object_with_keys

_MEMBERS = f"{params.PALETTE_MEMBERS_MIN} to {params.PALETTE_MEMBERS_MAX} colours"


class PaletteMember(BaseModel):
    """One colour of a custom palette: "#rrggbb" (stored lowercase) and a weight 0.05..1.0."""

    model_config = ConfigDict(extra="forbid")
    color_hex: str
    color_weight: float = 1.0

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        return object_with_keys(
            data, ("color_hex", "color_weight"),
            ' like {"color_hex": "#rrggbb", "color_weight": 0.5}',
        )

    @field_validator("color_hex", mode="before")
    @classmethod
    def _check_hex(cls, value: Any) -> str:
        if not isinstance(value, str) or not params.COLOR_HEX_RE.match(value.strip()):
            raise fail(f"must be a colour written #rrggbb, e.g. #1a2b3c (got {got(value)})")
        return value.strip().lower()

    @field_validator("color_weight", mode="before")
    @classmethod
    def _check_weight(cls, value: Any) -> float:
        rule = f"must be a number from {params.COLOR_WEIGHT_MIN} to {params.COLOR_WEIGHT_MAX}"
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise fail(f"{rule} (got {got(value)})")
        if not params.COLOR_WEIGHT_MIN <= value <= params.COLOR_WEIGHT_MAX:  # NaN fails too
            raise fail(f"{rule} (got {got(value)})")
        return float(value)


class ColorPalette(BaseModel):
    """Exactly one of `name` (a preset, stored uppercase) or `members` (1..8 colours)."""

    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    members: list[PaletteMember] | None = None

    @model_validator(mode="before")
    @classmethod
    def _check_shape(cls, data: Any) -> Any:
        data = object_with_keys(
            data, ("name", "members"), ': {"name": PRESET} or {"members": [...]}'
        )
        if isinstance(data, BaseModel):
            return data
        if "name" in data and "members" in data:
            raise fail("give either name or members, not both")
        if "name" not in data and "members" not in data:
            raise fail(
                "must give name (one of "
                + ", ".join(params.PALETTE_PRESET_NAMES)
                + f") or members (a list of {_MEMBERS})"
            )
        return data

    @field_validator("name", mode="before")
    @classmethod
    def _check_name(cls, value: Any) -> str:
        return choice(value, params.PALETTE_PRESET_NAMES)

    @field_validator("members", mode="before")
    @classmethod
    def _check_members(cls, value: Any) -> list[Any]:
        rule = f"must be a list of {_MEMBERS}"
        if not isinstance(value, list):
            raise fail(f"{rule} (got {got(value)})")
        if not params.PALETTE_MEMBERS_MIN <= len(value) <= params.PALETTE_MEMBERS_MAX:
            raise fail(f"{rule} (got {len(value)})")
        return value


PALETTE_PRESETS: dict[str, list[tuple[str, float]]] = {
    # Glowing coals: deep reds and oranges over charcoal.
    "EMBER": [
        ("#8b1a0e", 1.0),
        ("#c0392b", 0.9),
        ("#e8590c", 0.8),
        ("#f59f00", 0.5),
        ("#2b2522", 0.7),
    ],
    # Crisp and clean: mint, aqua, white, lime.
    "FRESH": [
        ("#98e8c1", 1.0),
        ("#4fd1c5", 0.8),
        ("#f8fffc", 0.7),
        ("#b5e550", 0.6),
        ("#2bb3a3", 0.4),
    ],
    # Rainforest: deep greens, moss and earth.
    "JUNGLE": [
        ("#0b3d20", 1.0),
        ("#1e6b34", 0.9),
        ("#5a7d2a", 0.7),
        ("#8a9a3b", 0.5),
        ("#5c4023", 0.5),
        ("#2f2416", 0.3),
    ],
    # Spellbook: purples, magenta, midnight, a touch of gold.
    "MAGIC": [
        ("#4b1d8f", 1.0),
        ("#8e3fd0", 0.8),
        ("#d63ab0", 0.6),
        ("#141233", 0.8),
        ("#e6b422", 0.3),
    ],
    # Watermelon: pink flesh, green rind, cream.
    "MELON": [
        ("#f25c78", 1.0),
        ("#ff8fa3", 0.8),
        ("#3f9142", 0.6),
        ("#1f5e2a", 0.4),
        ("#fbf3dc", 0.6),
    ],
    # Tiles: saturated, varied hues in equal measure.
    "MOSAIC": [
        ("#e63946", 1.0),
        ("#f4a300", 1.0),
        ("#2a9d8f", 1.0),
        ("#1d4ed8", 1.0),
        ("#7b2cbf", 1.0),
        ("#f1e3c8", 0.6),
    ],
    # Soft pastels.
    "PASTEL": [
        ("#ffd1dc", 1.0),
        ("#c1e1c1", 0.9),
        ("#aec6cf", 0.9),
        ("#fdfd96", 0.7),
        ("#d7bde2", 0.8),
    ],
    # Deep blues.
    "ULTRAMARINE": [
        ("#120a8f", 1.0),
        ("#1c39bb", 0.9),
        ("#0b1f5c", 0.8),
        ("#3f6fd8", 0.6),
        ("#dbe6ff", 0.3),
    ],
}
"""Preset name -> ("#rrggbb", weight) members; the keys are exactly `PALETTE_PRESET_NAMES`."""


def hex_to_rgb(color_hex: str) -> tuple[int, int, int]:
    """A "#rrggbb" colour (any case) as (r, g, b) in 0..255."""
    digits = color_hex.lstrip("#")
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def palette_colors(palette: ColorPalette) -> list[tuple[tuple[int, int, int], float]]:
    """The palette's colours as ((r, g, b), weight) with the weights normalised to sum to 1.

    Works for a preset (`name`) and for custom `members` alike; order is kept.
    """
    if palette.name is not None:
        pairs = PALETTE_PRESETS[palette.name.upper()]
    else:
        pairs = [(m.color_hex, m.color_weight) for m in palette.members or []]
    if not pairs:
        raise ValueError("a colour palette needs a name or at least one member")
    total = sum(weight for _, weight in pairs)
    return [(hex_to_rgb(color_hex), weight / total) for color_hex, weight in pairs]
