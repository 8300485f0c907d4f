"""The colour-palette presets of CONTRACT.md §3 as concrete colours, and `palette_colors`.

Each preset is 4-6 ("#rrggbb", weight) members picked so that its name is evident in the
output. Engines read palettes only through `palette_colors`, which resolves a preset or custom
members to RGB with weights that sum to 1.
"""

from __future__ import annotations

from openremix.contract.request import ColorPalette

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
