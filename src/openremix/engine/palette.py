"""Colour work in Lab shared by the engines: palettes, and reference colour statistics.

`color_palette` works in two places of the style engine: its swatch (stripes sized by
`color_weight`) is read as a style vector and blended into the target style, and after
stylizing, `transfer_palette` moves the image's colours toward the palette: first its Lab mean
and spread, then each pixel's chroma toward its nearest palette colours (soft assignment). The
diffusion engine applies the same `transfer_palette` to its output, and `transfer_color_stats`
(the references' Lab mean and spread) where no IP-Adapter reads `style_reference_images`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from openremix.contract.palettes import hex_to_rgb, palette_colors
from openremix.engine.pixels import to_array, to_image

__all__ = [
    "RGB", "PaletteColors", "hex_to_rgb", "lab_to_rgb", "mean_color", "palette_colors",
    "palette_swatch", "rgb_to_hex", "rgb_to_lab", "transfer_color_stats", "transfer_palette",
]

RGB = tuple[int, int, int]
"""(r, g, b) 0..255."""
PaletteColors = list[tuple[RGB, float]]
"""((r, g, b) 0..255, weight) pairs; weights need not sum to 1."""

# sRGB (D65) <-> CIE Lab
_RGB_TO_XYZ = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
     [0.019334, 0.119193, 0.950227]], dtype=np.float32)
_XYZ_TO_RGB = np.linalg.inv(_RGB_TO_XYZ).astype(np.float32)
_WHITE = np.array([0.950456, 1.0, 1.088754], dtype=np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB in 0..1 (..., 3) -> Lab (L 0..100)."""
    lin = np.where(rgb > 0.04045, ((rgb + 0.055) / 1.055) ** 2.4, rgb / 12.92)
    xyz = lin @ _RGB_TO_XYZ.T / _WHITE
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lab = np.empty_like(f)
    lab[..., 0] = 116.0 * f[..., 1] - 16.0
    lab[..., 1] = 500.0 * (f[..., 0] - f[..., 1])
    lab[..., 2] = 200.0 * (f[..., 1] - f[..., 2])
    return lab.astype(np.float32)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Lab -> sRGB in 0..1 (clipped)."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = np.stack([fy + lab[..., 1] / 500.0, fy, fy - lab[..., 2] / 200.0], axis=-1)
    xyz = np.where(f > 0.206893, f**3, (f - 16.0 / 116.0) / 7.787) * _WHITE
    lin = np.clip(xyz @ _XYZ_TO_RGB.T, 0.0, 1.0)
    rgb = np.where(lin > 0.0031308, 1.055 * lin ** (1 / 2.4) - 0.055, 12.92 * lin)
    return np.clip(rgb, 0.0, 1.0).astype(np.float32)


def _normalized(colors: PaletteColors) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.array([c for c, _ in colors], dtype=np.float32) / 255.0
    weights = np.array([max(w, 1e-3) for _, w in colors], dtype=np.float32)
    return rgb, weights / weights.sum()


def palette_swatch(colors: PaletteColors, size: int = 256, repeats: int = 3) -> np.ndarray:
    """A style image: diagonal stripes, each colour's width proportional to its weight."""
    rgb, weights = _normalized(colors)
    edges = np.cumsum(weights)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    phase = ((x + 0.35 * y) * repeats) % 1.0
    index = np.minimum(np.searchsorted(edges, phase, side="right"), len(rgb) - 1)
    return rgb[index]


def mean_color(colors: PaletteColors) -> np.ndarray:
    """Weighted mean RGB (0..1) of a palette."""
    rgb, weights = _normalized(colors)
    return weights @ rgb


def apply_color_map(image: np.ndarray, color_map: Callable[[np.ndarray], np.ndarray],
                    grid: int = 33) -> np.ndarray:
    """Apply a per-pixel colour function through a `grid`^3 lookup table (trilinear, Pillow).

    The function runs on grid^3 colours instead of every pixel, so its cost does not grow
    with the image size; Pillow interpolates the table in C.
    """
    from PIL import ImageFilter

    axis = np.linspace(0.0, 1.0, grid, dtype=np.float32)
    b, g, r = np.meshgrid(axis, axis, axis, indexing="ij")  # Pillow: red varies fastest
    table = color_map(np.stack([r, g, b], axis=-1).reshape(-1, 3)).astype(np.float32)
    lut = ImageFilter.Color3DLUT(grid, table.reshape(-1))
    return to_array(to_image(image).filter(lut))


def transfer_palette(image: np.ndarray, colors: PaletteColors, amount: float = 0.7) -> np.ndarray:
    """Move `image` (HxWx3, 0..1) toward the palette in Lab space; `amount` 0..1."""
    if not colors or amount <= 0:
        return image
    rgb, weights = _normalized(colors)
    pal = rgb_to_lab(rgb)

    # 1. global statistics: mean toward the palette's weighted mean, chroma spread toward its own
    pal_mean = weights @ pal
    pal_std = np.sqrt(weights @ (pal - pal_mean) ** 2)
    mean, std = _lab_stats(image)
    target_std = np.maximum(pal_std, np.array([12.0, 8.0, 8.0], np.float32))
    scale = 1.0 + amount * (target_std / std - 1.0)
    scale[0] = np.clip(scale[0], 0.8, 1.25)  # keep the picture's light structure readable
    scale[1:] = np.clip(scale[1:], 0.5, 2.0)
    shift = amount * (pal_mean - mean) * np.array([0.5, 1, 1], np.float32)

    def to_palette(cube: np.ndarray) -> np.ndarray:
        moved = (rgb_to_lab(cube) - mean) * scale + mean + shift
        # 2. local: each colour's chroma toward the palette colours near it (soft assignment)
        d2 = ((moved[:, None, :] - pal[None, :, :]) * np.array([0.5, 1, 1], np.float32)) ** 2
        logits = np.log(weights)[None, :] - d2.sum(-1) / (2 * 30.0**2)
        assign = np.exp(logits - logits.max(1, keepdims=True))
        pull = (assign / assign.sum(1, keepdims=True)) @ pal
        local = 0.6 * amount
        moved[:, 1:] += local * (pull[:, 1:] - moved[:, 1:])
        moved[:, 0] += 0.25 * local * (pull[:, 0] - moved[:, 0])
        return lab_to_rgb(moved)

    return apply_color_map(image, to_palette)


def _lab_stats(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lab mean and spread of `image`, read on a grid of about 65k pixels (enough, and fast)."""
    step = max(1, int(np.sqrt(image.shape[0] * image.shape[1] / 65536)))
    lab = rgb_to_lab(image[::step, ::step]).reshape(-1, 3)
    return lab.mean(0), lab.std(0) + 1e-3


def transfer_color_stats(image: np.ndarray, references: Sequence[np.ndarray],
                         amount: float = 0.7) -> np.ndarray:
    """Move `image`'s Lab mean and spread (HxWx3, 0..1) toward the references' average.

    The fallback for `style_reference_images` without an IP-Adapter; `amount` 0..1.
    """
    stats = [_lab_stats(ref) for ref in references]
    ref_mean = np.mean([m for m, _ in stats], axis=0)
    ref_std = np.mean([s for _, s in stats], axis=0)
    mean, std = _lab_stats(image)

    def to_references(cube: np.ndarray) -> np.ndarray:
        lab = rgb_to_lab(cube)
        return lab_to_rgb(lab + amount * ((lab - mean) / std * ref_std + ref_mean - lab))

    return apply_color_map(image, to_references)


def rgb_to_hex(rgb: RGB) -> str:
    """(r, g, b) -> "#rrggbb", the inverse of `hex_to_rgb`."""
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def blend_colors(colors: Sequence[tuple[RGB, float]]) -> str:
    """A short, stable description of a palette for reports: '#rrggbb:w,...'."""
    return ",".join(f"{rgb_to_hex(rgb)}:{w:.2f}" for rgb, w in colors)
