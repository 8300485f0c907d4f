"""The constants of CONTRACT.md §3: sizes, aspect ratios, limits and enum values.

Pure data; `request.py` states the rules with these and other modules (media, engine, api) read
the same numbers from here rather than repeating them.
"""

from __future__ import annotations

import re

MODEL_SLUG = "ideogram-3-remix"
"""The model slug of the Segmind wire: `POST /v1/{slug}`, `POST /v2/{slug}`."""
MODEL_SLUGS = frozenset({MODEL_SLUG})
"""Every slug this server answers."""

RESOLUTIONS: tuple[str, ...] = (
    "512x1536", "576x1408", "576x1472", "576x1536", "640x1344", "640x1408", "640x1472",
    "640x1536", "704x1152", "704x1216", "704x1280", "704x1344", "704x1408", "704x1472",
    "736x1312", "768x1088", "768x1216", "768x1280", "768x1344", "800x1280", "832x960",
    "832x1024", "832x1088", "832x1152", "832x1216", "832x1248", "864x1152", "896x960",
    "896x1024", "896x1088", "896x1120", "896x1152", "960x832", "960x896", "960x1024",
    "960x1088", "1024x832", "1024x896", "1024x960", "1024x1024", "1088x768", "1088x832",
    "1088x896", "1088x960", "1120x896", "1152x704", "1152x832", "1152x864", "1152x896",
    "1216x704", "1216x768", "1216x832", "1248x832", "1280x704", "1280x768", "1280x800",
    "1312x736", "1344x640", "1344x704", "1344x768", "1408x576", "1408x640", "1408x704",
    "1472x576", "1472x640", "1472x704", "1536x512", "1536x576", "1536x640",
)  # fmt: skip
"""The 69 output sizes, "WxH", in the order CONTRACT.md §3 lists them."""

ASPECT_RATIOS: dict[str, str] = {
    "1x3": "512x1536",
    "3x1": "1536x512",
    "1x2": "704x1408",
    "2x1": "1408x704",
    "9x16": "736x1312",
    "16x9": "1312x736",
    "10x16": "800x1280",
    "16x10": "1280x800",
    "2x3": "832x1248",
    "3x2": "1248x832",
    "3x4": "864x1152",
    "4x3": "1152x864",
    "4x5": "896x1120",
    "5x4": "1120x896",
    "1x1": "1024x1024",
}
"""The 15 aspect ratios and the resolution each one selects."""

DEFAULT_RESOLUTION = "1024x1024"

RESOLUTIONS_2K: tuple[str, ...] = (
    "2048x2048", "1440x2880", "2880x1440", "1664x2496", "2496x1664", "1792x2240", "2240x1792",
    "1440x2560", "2560x1440", "1600x2560", "2560x1600", "1728x2304", "2304x1728", "1296x3168",
    "3168x1296", "1152x2944", "2944x1152", "1248x3328", "3328x1248", "1280x3072", "3072x1280",
    "1024x3072", "3072x1024",
)  # fmt: skip
"""The 2K output sizes of Ideogram 4.0 (`/v1/ideogram-v4/remix`), "WxH"."""
DEFAULT_RESOLUTION_2K = "2048x2048"

ALL_RESOLUTIONS: frozenset[str] = frozenset(RESOLUTIONS) | frozenset(RESOLUTIONS_2K)
"""Every size a stored job may carry (each wire validated its own list at submit)."""

NUM_IMAGES_MIN = 1
NUM_IMAGES_MAX = 8
"""How many images one request may ask for (`num_images` on Ideogram's wire, `n` on OpenAI's);
they get the seeds `seed, seed + 1, ...`. Segmind's wire has no such field."""

RENDERING_SPEEDS: tuple[str, ...] = ("TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED")
SPEED_ALIASES: dict[str, str] = {"FLASH": "TURBO", "BALANCED": "DEFAULT"}
"""Ideogram 3's newer speed names and the classic speed each one means; engines plan only the
three classic speeds."""


def base_speed(rendering_speed: str) -> str:
    """The classic speed (TURBO, DEFAULT, QUALITY) that `rendering_speed` stands for."""
    return SPEED_ALIASES.get(rendering_speed, rendering_speed)

MAGIC_PROMPTS: tuple[str, ...] = ("AUTO", "ON", "OFF")
STYLE_TYPES: tuple[str, ...] = ("AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION", "STYLIZED")
OUTPUT_FORMATS: tuple[str, ...] = ("jpeg", "png", "webp")
"""Extension (CONTRACT.md §4); "jpg" is accepted as a spelling of "jpeg"."""

DEFAULT_STYLE_TYPE = "GENERAL"
"""The only `style_type` that `style_codes` may be combined with."""

PALETTE_PRESET_NAMES: tuple[str, ...] = (
    "EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL", "ULTRAMARINE",
)  # fmt: skip
"""Names accepted in `color_palette.name`; `palettes.PALETTE_PRESETS` holds their colours."""

MAX_PROMPT_CHARS = 10_000
"""Limit on `prompt` and on `negative_prompt`, in characters (code points)."""

IMAGE_WEIGHT_MIN = 1
IMAGE_WEIGHT_MAX = 100
DEFAULT_IMAGE_WEIGHT = 50

SEED_MAX = 2147483647
"""Largest accepted `seed` (2**31 - 1); the smallest is 0."""

STYLE_CODE_RE = re.compile(r"\A[0-9a-f]{8}\Z", re.IGNORECASE)
"""A style code: exactly 8 hex digits, any case (stored uppercase)."""

MAX_STYLE_CODES = 16
MAX_STYLE_REFERENCE_IMAGES = 10

PALETTE_MEMBERS_MIN = 1
PALETTE_MEMBERS_MAX = 8
COLOR_WEIGHT_MIN = 0.05
COLOR_WEIGHT_MAX = 1.0
COLOR_HEX_RE = re.compile(r"\A#[0-9a-f]{6}\Z", re.IGNORECASE)
"""A palette colour: "#rrggbb", any case (stored lowercase)."""

MAX_IMAGE_BYTES = 10 * 1024 * 1024
"""Largest encoded `image` (after base64/data-URI decoding or download)."""

MAX_IMAGE_SIDE = 4096
"""Largest width or height of a decoded input image, in pixels."""

MAX_STYLE_REFERENCE_BYTES = 10 * 1024 * 1024
"""Largest total encoded size of all `style_reference_images` together."""
