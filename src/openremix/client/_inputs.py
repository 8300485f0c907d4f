"""Request bodies: images in any handy form become strings, and parameters are checked locally.

An image may be given as an http(s) URL, a data URI or bare base64 (sent as is), or as a local
path, bytes, a binary file object or a PIL image (sent inline as a `data:` URI). Parameters are
validated with the contract's own `parse_remix_request`, so a bad one fails before any request,
with the server's wording; the body sent is still what the user gave.
"""

from __future__ import annotations

import base64
import io
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, TypedDict, Union

from openremix.client._errors import BadRequest
from openremix.contract.errors import InvalidRequest
from openremix.contract.params import MAX_IMAGE_BYTES
from openremix.contract.request import ColorPalette, RemixRequest, parse_remix_request

if TYPE_CHECKING:
    from PIL import Image as PILImage

ImageInput = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview, IO[bytes],
                   "PILImage.Image"]
"""An image: URL, data URI, bare base64, local path, bytes, binary file object or PIL image."""

_BARE_BASE64 = re.compile(r"\A[A-Za-z0-9+/=\s]{256,}\Z")
_KINDS = "an http(s) URL, a data URI, a local path, bytes, a binary file or a PIL image"


class PaletteMemberParam(TypedDict, total=False):
    """One colour of a custom palette."""

    color_hex: str
    color_weight: float


class ColorPaletteParam(TypedDict, total=False):
    """`{"name": PRESET}` or `{"members": [...]}` (1..8 colours), never both."""

    name: Literal["EMBER", "FRESH", "JUNGLE", "MAGIC", "MELON", "MOSAIC", "PASTEL",
                  "ULTRAMARINE"]
    members: list[PaletteMemberParam]


class RemixParams(TypedDict, total=False):
    """The optional parameters of a remix (CONTRACT.md §3 and the §4 extensions)."""

    image_weight: int
    """1..100, default 50: how much of the input image survives."""
    seed: int
    """0..2147483647; the same seed and inputs give the same image."""
    resolution: str
    """Output "WxH", one of the 69 supported sizes (default "1024x1024")."""
    aspect_ratio: Literal["1x3", "3x1", "1x2", "2x1", "9x16", "16x9", "10x16", "16x10", "2x3",
                          "3x2", "3x4", "4x3", "4x5", "5x4", "1x1"]
    """Selects a resolution; do not combine with `resolution`."""
    rendering_speed: Literal["TURBO", "DEFAULT", "QUALITY", "FLASH", "BALANCED"]
    magic_prompt: Literal["AUTO", "ON", "OFF"]
    negative_prompt: str
    style_type: Literal["AUTO", "GENERAL", "REALISTIC", "DESIGN", "FICTION", "STYLIZED"]
    style_codes: list[str]
    """8-hex-digit style codes; not with `style_reference_images` or another `style_type`."""
    style_reference_images: Sequence[ImageInput]
    color_palette: ColorPaletteParam | ColorPalette
    output_format: Literal["jpeg", "png", "webp"]


def _sniff_mime(data: bytes) -> str | None:
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def _is_pil_image(value: object) -> bool:
    return any(cls.__module__.startswith("PIL.") and cls.__name__ == "Image"
               for cls in type(value).__mro__)


def _pil_bytes(image: PILImage.Image) -> bytes:
    """PNG (lossless) when it fits the size limit, else a high-quality JPEG."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    if buffer.tell() <= MAX_IMAGE_BYTES:
        return buffer.getvalue()
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def bytes_to_data_uri(data: bytes, field: str) -> str:
    """`data:image/...;base64,...` for JPEG, PNG or WebP bytes."""
    mime = _sniff_mime(data)
    if mime is None:
        raise BadRequest(f"{field}: must be a JPEG, PNG or WebP image (got {len(data)} bytes "
                         "of another kind)")
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def image_string(value: Any, field: str = "image") -> str:
    """The wire form of an image given as any `ImageInput`; BadRequest when it is none."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("http://", "https://", "data:")):
            return text
        if text and os.path.isfile(text):
            return bytes_to_data_uri(Path(text).read_bytes(), field)
        if _BARE_BASE64.match(text):
            return text
        raise BadRequest(f"{field}: no such file {_short(value)}; give {_KINDS}")
    if isinstance(value, os.PathLike):
        path = Path(value)
        if not path.is_file():
            raise BadRequest(f"{field}: no such file {_short(str(path))}")
        return bytes_to_data_uri(path.read_bytes(), field)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes_to_data_uri(bytes(value), field)
    if _is_pil_image(value):
        return bytes_to_data_uri(_pil_bytes(value), field)
    if hasattr(value, "read"):
        return bytes_to_data_uri(value.read(), field)
    raise BadRequest(f"{field}: must be {_KINDS} (got {type(value).__name__})")


def _short(text: str) -> str:
    return repr(text) if len(text) <= 60 else repr(text[:57] + "...")


def _wire_value(name: str, value: Any) -> Any:
    """A parameter as JSON: images inlined, a ColorPalette model dumped."""
    if name == "style_reference_images" and isinstance(value, (list, tuple)):
        return [image_string(item, f"{name}[{i}]") for i, item in enumerate(value)]
    if name == "color_palette" and isinstance(value, ColorPalette):
        return value.model_dump(exclude_none=True)
    return value


def build_body(
    image: Any,
    prompt: str,
    params: Mapping[str, Any],
    extra_body: Mapping[str, Any] | None = None,
    validate: bool = True,
) -> tuple[dict[str, Any], RemixRequest | None]:
    """The JSON body of a remix and, when `validate`, the request as the server will read it.

    Keyword arguments left as None are "not given" and are not sent. `extra_body` is merged
    last and never validated beyond what the server does (unknown keys come back as warnings).
    """
    body: dict[str, Any] = {"image": image_string(image), "prompt": prompt}
    body.update({k: _wire_value(k, v) for k, v in params.items() if v is not None})
    body.update(extra_body or {})
    if not validate:
        return body, None
    try:
        request, _ = parse_remix_request(body)
    except InvalidRequest as exc:
        raise BadRequest(exc.message) from None
    return body, request
