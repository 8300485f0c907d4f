"""PIL images <-> float RGB arrays (HxWx3, float32, 0..1): the form the engines' colour work
and the style networks take. One rounding rule both ways, so every engine converts alike."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_array(image: Image.Image) -> np.ndarray:
    """RGB PIL image -> HxWx3 float32 0..1."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def to_image(array: np.ndarray) -> Image.Image:
    """HxWx3 float 0..1 -> RGB PIL image (rounded, clipped)."""
    return Image.fromarray((np.clip(array, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))
