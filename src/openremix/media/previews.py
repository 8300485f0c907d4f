"""Live previews of a running job: where one is stored, and the small JPEG it is stored as.

The worker overwrites one blob per job (`preview_key`) every few steps and deletes it when the
job's run ends; the API's event stream reads it and sends it to the job's owner as a data URI.
The key's extension is `.preview`, which `/outputs/{key}` does not serve (it serves only image
extensions): a preview is seen only through the authenticated event stream, never at a URL
anyone who learns the request id could open. The step it shows travels inside the JPEG, as its
comment, so the image and its step can never disagree.
"""

from __future__ import annotations

import io
import re

from PIL import Image

PREVIEW_EXTENSION = "preview"
PREVIEW_MAX_SIDE = 256
"""Previews are at most this many pixels a side (a diffusion model's latent grid is smaller)."""
PREVIEW_QUALITY = 70
_COMMENT = re.compile(rb"^openremix-preview step (\d+)/(\d+)$")


def preview_key(request_id: str) -> str:
    """The storage key of a job's live preview."""
    return f"{request_id}.{PREVIEW_EXTENSION}"


def encode_preview(image: Image.Image, step: int, total: int) -> bytes:
    """A small JPEG of `image` (shrunk to `PREVIEW_MAX_SIDE`) that says which step it shows."""
    image = image.convert("RGB")
    if max(image.size) > PREVIEW_MAX_SIDE:
        image = image.copy()
        image.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=PREVIEW_QUALITY,
               comment=f"openremix-preview step {step}/{total}".encode())
    return buffer.getvalue()


def preview_step(data: bytes) -> tuple[int, int] | None:
    """(step, total) a stored preview shows, or None when `data` is not a preview."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            comment = image.info.get("comment", b"")
    except Exception:  # a half-gone or foreign blob is simply no preview
        return None
    found = _COMMENT.match(comment if isinstance(comment, bytes) else b"")
    return (int(found.group(1)), int(found.group(2))) if found else None
