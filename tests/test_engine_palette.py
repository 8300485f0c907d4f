"""Colour palettes: swatch, Lab transfer, and the engine's output moving toward the palette."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from openremix.contract.request import ColorPalette, PaletteMember, RemixRequest
from openremix.engine import palette as pal
from openremix.engine.base import EngineInput
from openremix.engine.style.engine import StyleEngine


def photo(name: str = "coffee") -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


@pytest.fixture(scope="module")
def engine() -> StyleEngine:
    eng = StyleEngine(threads=2)
    eng.load()
    return eng


def remix_mean(engine: StyleEngine, palette: ColorPalette | None, **kw: Any) -> np.ndarray:
    values: dict[str, Any] = {"image": "x", "prompt": "a cup of coffee", "seed": 4,
                              "resolution": "512x512", "rendering_speed": "TURBO",
                              "magic_prompt": "OFF", "color_palette": palette}
    values.update(kw)
    item = EngineInput("req", RemixRequest.model_construct(**values), photo())
    out = engine.remix([item], lambda s, t: None)[0]
    assert out.image is not None
    return np.asarray(out.image, np.float32).reshape(-1, 3).mean(0) / 255.0


def test_lab_round_trip_is_exact_enough() -> None:
    rgb = np.random.default_rng(0).random((64, 64, 3), dtype=np.float32)
    assert np.abs(pal.lab_to_rgb(pal.rgb_to_lab(rgb)) - rgb).max() < 2e-3


def test_swatch_stripes_are_sized_by_color_weight() -> None:
    colors = [((255, 0, 0), 0.75), ((0, 0, 255), 0.25)]
    swatch = pal.palette_swatch(colors, size=128)
    red_share = (swatch[..., 0] > 0.5).mean()
    assert abs(red_share - 0.75) < 0.05


def test_color_map_identity_keeps_the_image() -> None:
    rgb = np.asarray(photo().resize((64, 48)), np.float32) / 255.0
    assert np.abs(pal.apply_color_map(rgb, lambda c: c) - rgb).max() < 1e-6


def test_transfer_moves_the_mean_colour_toward_the_palette() -> None:
    rgb = np.asarray(photo().resize((128, 96)), np.float32) / 255.0
    colors = [((20, 40, 200), 1.0), ((120, 160, 255), 0.5)]
    target = pal.mean_color(colors)
    moved = pal.transfer_palette(rgb, colors, 0.7)
    before = np.linalg.norm(rgb.reshape(-1, 3).mean(0) - target)
    after = np.linalg.norm(moved.reshape(-1, 3).mean(0) - target)
    assert after < 0.6 * before


@pytest.mark.parametrize("palette", [
    ColorPalette.model_construct(name="EMBER", members=None),
    ColorPalette.model_construct(name="ULTRAMARINE", members=None),
    ColorPalette.model_construct(name="JUNGLE", members=None),
    ColorPalette.model_construct(name=None, members=[
        PaletteMember.model_construct(color_hex="#00C2A8", color_weight=1.0),
        PaletteMember.model_construct(color_hex="#F2F2F2", color_weight=0.3),
    ]),
], ids=["EMBER", "ULTRAMARINE", "JUNGLE", "custom"])
def test_engine_output_moves_toward_the_palette(engine: StyleEngine, palette: ColorPalette) -> None:
    target = pal.mean_color(pal.palette_colors(palette))
    without = remix_mean(engine, None)
    with_palette = remix_mean(engine, palette)
    assert np.linalg.norm(with_palette - target) < 0.75 * np.linalg.norm(without - target)


def test_reference_colour_statistics_move_the_image_toward_the_references() -> None:
    rng = np.random.default_rng(0)
    image = rng.random((48, 64, 3)).astype(np.float32) * 0.5  # dark, grey-ish
    reference = np.zeros((32, 32, 3), np.float32) + np.array([0.9, 0.6, 0.1], np.float32)
    moved = pal.transfer_color_stats(image, [reference], amount=0.7)
    assert moved.shape == image.shape
    before = np.abs(image.mean((0, 1)) - reference.mean((0, 1))).sum()
    after = np.abs(moved.mean((0, 1)) - reference.mean((0, 1))).sum()
    assert after < 0.6 * before
    unchanged = pal.transfer_color_stats(image, [reference], amount=0.0)
    assert np.abs(unchanged - image).max() < 0.01  # only the colour table's rounding
