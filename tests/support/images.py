"""Real photos (scikit-image's sample images) as test and benchmark inputs."""

from __future__ import annotations

import base64
import io

from PIL import Image


def photo(name: str = "astronaut", size: int | None = 512) -> Image.Image:
    """A real photo from scikit-image, optionally shrunk (keeps test inputs small)."""
    from skimage import data

    image = Image.fromarray(getattr(data, name)()).convert("RGB")
    if size:
        image.thumbnail((size, size))
    return image


def data_uri(image: Image.Image, fmt: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    mime = "image/jpeg" if fmt == "JPEG" else f"image/{fmt.lower()}"
    return f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
