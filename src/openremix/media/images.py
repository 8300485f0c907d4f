"""Turn an `image` string (URL, data URI or bare base64) into a checked RGB Pillow image.

The rules are CONTRACT.md §3, field `image`: JPEG, PNG or WebP; at most 10 MB; at most 4096 px
a side. The image's size is read from its header and checked before any pixel is decoded, so a
small file that claims huge dimensions (a decompression bomb) costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from openremix.config import Settings
from openremix.contract import params
from openremix.contract.errors import InputImageError
from openremix.media.addresses import Resolver, precheck_host
from openremix.media.fetch import fetch_url, format_size, parse_http_url

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = params.MAX_IMAGE_BYTES
DEFAULT_MAX_SIDE = params.MAX_IMAGE_SIDE
ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP")
# Pillow reports a multi-picture JPEG (most phone cameras) as "MPO"; its first frame is a JPEG.
_FORMATS_AFTER_OPEN = frozenset({"JPEG", "MPO", "PNG", "WEBP"})
_NOT_AN_IMAGE_STRING = "is not a valid http(s) URL, data URI or base64 image"
_NOT_VALID = "is not a valid JPEG, PNG or WebP image"
_DATA_URI = re.compile(r"^data:(?P<meta>[^,]*),(?P<data>.*)$", re.DOTALL | re.IGNORECASE)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*):")
_WHITESPACE = re.compile(r"\s+")
_OTHER_FORMATS = (  # magic bytes -> name, for a helpful refusal
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
)
_ENCODINGS: dict[str, tuple[str, str]] = {
    "jpeg": ("JPEG", "image/jpeg"),
    "jpg": ("JPEG", "image/jpeg"),
    "png": ("PNG", "image/png"),
    "webp": ("WEBP", "image/webp"),
}

ImageSource = tuple[Literal["url"], str] | tuple[Literal["bytes"], bytes]


def parse_image_string(value: str, *, field: str) -> ImageSource:
    """Classify an image string: `("url", url)` for http(s), `("bytes", data)` for inline data.

    Inline data is a `data:image/...;base64,` URI or bare base64 (whitespace and missing padding
    tolerated; URL-safe alphabet accepted). Anything else raises `InputImageError`.
    """
    text = value.strip()
    if not text:
        raise InputImageError(field, "is empty")
    lowered = text[:8].lower()
    if lowered.startswith(("http://", "https://")):
        return ("url", text)
    if lowered.startswith("data:"):
        return ("bytes", _decode_data_uri(text, field=field))
    scheme = _SCHEME.match(text)
    if scheme:  # base64 never contains ":", so this is some other URL scheme
        raise InputImageError(
            field,
            f"URL scheme {scheme['scheme']!r} is not supported; use http(s), a data URI or base64",
        )
    return ("bytes", _decode_base64(text, field=field))


def _decode_data_uri(text: str, *, field: str) -> bytes:
    match = _DATA_URI.match(text)
    if match is None:
        raise InputImageError(field, _NOT_AN_IMAGE_STRING)
    parts = [p.strip().lower() for p in match["meta"].split(";")]
    mime, params = parts[0], parts[1:]
    if not mime.startswith("image/"):
        raise InputImageError(
            field, f"data URI has MIME type {mime or '(none)'!r}; expected an image"
        )
    if "base64" not in params:
        raise InputImageError(field, "data URI must be base64-encoded (';base64,')")
    return _decode_base64(match["data"], field=field)


def _decode_base64(text: str, *, field: str) -> bytes:
    compact = _WHITESPACE.sub("", text)
    if "-" in compact or "_" in compact:
        compact = compact.replace("-", "+").replace("_", "/")
    compact = compact.rstrip("=")
    if not compact or len(compact) % 4 == 1:
        raise InputImageError(field, _NOT_AN_IMAGE_STRING)
    compact += "=" * (-len(compact) % 4)
    try:
        return base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputImageError(field, _NOT_AN_IMAGE_STRING) from exc


def _describe_unaccepted(data: bytes) -> str:
    for magic, name in _OTHER_FORMATS:
        if data.startswith(magic):
            return f"is a {name} image; only JPEG, PNG or WebP are accepted"
    if data[4:8] == b"ftyp":
        return "is a HEIC/AVIF image; only JPEG, PNG or WebP are accepted"
    return _NOT_VALID


def decode_image_bytes(
    data: bytes,
    *,
    field: str,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_side: int = DEFAULT_MAX_SIDE,
) -> Image.Image:
    """Decode a JPEG, PNG or WebP file into a fully loaded, upright RGB image.

    Checks, in order: byte size, format (sniffed, not guessed from a name), dimensions from the
    header (before decoding pixels), then decodes. EXIF orientation is applied; transparency
    is flattened onto white. Every refusal is an `InputImageError` naming `field`.
    """
    if len(data) > max_bytes:
        raise InputImageError(field, f"image is larger than {format_size(max_bytes)}")
    if not data:
        raise InputImageError(field, "image is empty")
    too_big = f"at most {max_side} px a side"
    try:
        with warnings.catch_warnings():
            # Our own side limit governs; Pillow's warning is noise below its hard limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError as exc:
        raise InputImageError(field, f"image dimensions are far too large; {too_big}") from exc
    except UnidentifiedImageError as exc:
        raise InputImageError(field, _describe_unaccepted(data)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputImageError(field, _NOT_VALID) from exc
    if img.format not in _FORMATS_AFTER_OPEN:
        raise InputImageError(field, _describe_unaccepted(data))
    width, height = img.size
    if width > max_side or height > max_side:
        raise InputImageError(field, f"image is {width}x{height} px; {too_big}")
    if width < 1 or height < 1:
        raise InputImageError(field, _NOT_VALID)
    try:
        img.load()
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as exc:
        raise InputImageError(field, f"{_NOT_VALID} (truncated or corrupt)") from exc
    return _to_rgb(_apply_orientation(img))


def _apply_orientation(img: Image.Image) -> Image.Image:
    try:
        upright = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not fail the request
        log.warning("ignoring unreadable EXIF orientation", exc_info=True)
        return img
    return upright if upright is not None else img


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with alpha (or palette transparency) composited onto white."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I"):
        # 16-bit grey: scale to 8 bits; a plain convert("RGB") would clip to white.
        grey = np.asarray(img, dtype=np.uint32) >> 8
        img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8), "L")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return img.convert("RGB") if img.mode != "RGB" else img


def center_crop_box(size: tuple[int, int], aspect: tuple[int, int]) -> tuple[int, int, int, int]:
    """The centred box of an image of `size` (w, h) that has the aspect ratio of `aspect`.

    The whole of the limiting side is kept; the other is rounded to the nearest pixel (Python's
    `round`: the engines' outputs, and so their style codes, depend on these exact boxes).
    """
    width, height = aspect
    if width <= 0 or height <= 0:
        raise ValueError(f"aspect must be positive, got {width}x{height}")
    src_w, src_h = size
    if src_w * height > src_h * width:  # too wide: keep the full height
        crop_w, crop_h = max(1, round(src_h * width / height)), src_h
    else:  # too tall (or exact): keep the full width
        crop_w, crop_h = src_w, max(1, round(src_w * height / width))
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def center_crop_resize(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Centre-crop `image` to the aspect ratio of `size` (w, h), then resize to it exactly.

    The one crop every engine uses (CONTRACT.md: the input is centre-cropped to the output's
    aspect ratio).
    """
    box = center_crop_box(image.size, size)
    return image.convert("RGB").resize(size, Image.Resampling.LANCZOS, box=box)


def encode_image(img: Image.Image, fmt: str = "jpeg", quality: int = 92) -> tuple[bytes, str]:
    """Encode to `jpeg`, `png` or `webp`; return `(bytes, content_type)`.

    No metadata is written (no EXIF, ICC profile, text or timestamps), so the same pixels
    always give the same bytes.
    """
    key = fmt.strip().lower()
    if key not in _ENCODINGS:
        raise ValueError(f"unsupported output format {fmt!r}; use jpeg, png or webp")
    pil_format, content_type = _ENCODINGS[key]
    if pil_format == "JPEG" and img.mode not in ("RGB", "L"):
        img = _to_rgb(img)
    clean = img.copy()
    clean.info = {}
    buffer = io.BytesIO()
    if pil_format == "JPEG":
        clean.save(buffer, "JPEG", quality=quality, optimize=True)
    elif pil_format == "PNG":
        clean.save(buffer, "PNG", compress_level=6)
    else:
        clean.save(buffer, "WEBP", quality=quality, method=4)
    return buffer.getvalue(), content_type


def check_references_total(sizes: list[int]) -> None:
    """CONTRACT.md §3: `style_reference_images` are at most 10 MB together."""
    if sum(sizes) > params.MAX_STYLE_REFERENCE_BYTES:
        raise InputImageError("style_reference_images", "at most 10 MB together")


class ImageLoader:
    """Loads `image` strings under one set of limits; the API checks, the worker loads."""

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_side: int = DEFAULT_MAX_SIDE,
        allow_private: bool = False,
        fetch_timeout: float = 10.0,
        resolver: Resolver | None = None,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_side = max_side
        self.allow_private = allow_private
        self.fetch_timeout = fetch_timeout
        self.resolver = resolver

    @classmethod
    def from_settings(cls, settings: Settings) -> ImageLoader:
        """The loader the API (submit-time checks) and the workers (fetch, decode) share."""
        return cls(
            max_bytes=settings.max_image_bytes,
            allow_private=settings.allow_private_urls,
            fetch_timeout=settings.fetch_timeout_seconds,
        )

    def read_bytes(self, value: str, field: str) -> bytes:
        """The encoded file behind an image string: fetched (URL) or decoded (inline)."""
        kind, payload = parse_image_string(value, field=field)
        if kind == "url":
            assert isinstance(payload, str)
            return fetch_url(
                payload,
                field=field,
                max_bytes=self.max_bytes,
                timeout=self.fetch_timeout,
                allow_private=self.allow_private,
                resolver=self.resolver,
            )
        assert isinstance(payload, bytes)
        if len(payload) > self.max_bytes:
            raise InputImageError(field, f"image is larger than {format_size(self.max_bytes)}")
        return payload

    def load(self, value: str, field: str) -> Image.Image:
        """The decoded, upright RGB image behind an image string (fetches URLs)."""
        data = self.read_bytes(value, field)
        return self.decode(data, field)

    def decode(self, data: bytes, field: str) -> Image.Image:
        """`decode_image_bytes` under this loader's limits."""
        return decode_image_bytes(
            data, field=field, max_bytes=self.max_bytes, max_side=self.max_side
        )

    def check_inline(self, value: str, field: str) -> int:
        """Fast submit-time check: inline images are decoded fully; URLs only checked by syntax.

        For a URL: the scheme, a host, and that the host is neither a blocked name nor a
        refused IP literal. No DNS lookup and no download happen here. Returns the inline
        image's size in bytes (0 for a URL, whose size is known only once fetched).
        """
        kind, payload = parse_image_string(value, field=field)
        if kind == "url":
            assert isinstance(payload, str)
            url = parse_http_url(payload, field=field)
            precheck_host(
                url.raw_host.decode("ascii"), allow_private=self.allow_private, field=field
            )
            return 0
        assert isinstance(payload, bytes)
        self.decode(payload, field).close()
        return len(payload)

    def check_inline_references(self, values: list[str]) -> None:
        """`check_inline` for `style_reference_images`, plus their 10 MB total (inline ones)."""
        sizes = [self.check_inline(v, f"style_reference_images[{i}]") for i, v in enumerate(values)]
        check_references_total(sizes)

    def load_references(self, values: list[str]) -> list[Image.Image]:
        """Fetch and decode `style_reference_images`, enforcing their 10 MB total."""
        blobs = [
            self.read_bytes(value, f"style_reference_images[{i}]")
            for i, value in enumerate(values)
        ]
        check_references_total([len(blob) for blob in blobs])
        return [
            self.decode(blob, f"style_reference_images[{i}]") for i, blob in enumerate(blobs)
        ]
