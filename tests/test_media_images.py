"""Image strings to pixels: parsing, decoding limits, orientation, crop and encode."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image
from skimage import data as skdata

from openremix.contract.errors import InputImageError, UnsafeURL
from openremix.media.images import (
    ImageLoader,
    center_crop_box,
    center_crop_resize,
    decode_image_bytes,
    encode_image,
    parse_image_string,
)

MIB = 1024 * 1024
PHOTOS = {"astronaut": skdata.astronaut, "chelsea": skdata.chelsea, "coffee": skdata.coffee}


def photo(name: str) -> Image.Image:
    return Image.fromarray(PHOTOS[name]())


def encoded(img: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR is patched (with a correct CRC) to claim another size."""
    raw = bytearray(encoded(Image.new("RGB", (1, 1)), "PNG"))
    ihdr_at = raw.index(b"IHDR")
    struct.pack_into(">II", raw, ihdr_at + 4, width, height)
    body = bytes(raw[ihdr_at : ihdr_at + 4 + 13])
    struct.pack_into(">I", raw, ihdr_at + 4 + 13, zlib.crc32(body))
    return bytes(raw)


# --- parse_image_string ----------------------------------------------------------------------


def test_http_and_https_urls_are_urls() -> None:
    for url in ("http://example.com/a.png", "HTTPS://example.com/a.png?x=1"):
        assert parse_image_string(f"  {url} ", field="image") == ("url", url)


def test_data_uri_is_decoded() -> None:
    payload = encoded(photo("chelsea"), "PNG")
    uri = "data:image/png;base64," + base64.b64encode(payload).decode()
    assert parse_image_string(uri, field="image") == ("bytes", payload)


def test_bare_base64_with_newlines_and_no_padding_is_accepted() -> None:
    payload = encoded(photo("coffee"), "JPEG")
    text = base64.b64encode(payload).decode().rstrip("=")
    wrapped = "\n".join(text[i : i + 76] for i in range(0, len(text), 76))
    kind, data = parse_image_string(wrapped, field="image")
    assert (kind, data) == ("bytes", payload)
    assert decode_image_bytes(data, field="image").size == (600, 400)


def test_url_safe_base64_is_accepted() -> None:
    payload = bytes(range(256))
    assert parse_image_string(base64.urlsafe_b64encode(payload).decode(), field="x") == (
        "bytes",
        payload,
    )


@pytest.mark.parametrize("value", ["not base64!", "abcde", "####", "a.b/c", "=="])
def test_bad_base64_is_refused(value: str) -> None:
    with pytest.raises(InputImageError) as caught:
        parse_image_string(value, field="image")
    assert caught.value.rule == "is not a valid http(s) URL, data URI or base64 image"


def test_data_uri_with_a_non_image_type_is_refused() -> None:
    with pytest.raises(InputImageError, match="text/plain"):
        parse_image_string("data:text/plain;base64,aGVsbG8=", field="image")


def test_data_uri_that_is_not_base64_is_refused() -> None:
    with pytest.raises(InputImageError, match="base64"):
        parse_image_string("data:image/png,%89PNG", field="image")


@pytest.mark.parametrize(
    "value", ["file:///etc/passwd", "ftp://example.com/a.png", "gopher://example.com/"]
)
def test_other_url_schemes_are_refused(value: str) -> None:
    with pytest.raises(InputImageError, match="scheme"):
        parse_image_string(value, field="image")


def test_empty_string_is_refused() -> None:
    with pytest.raises(InputImageError, match="empty"):
        parse_image_string("   ", field="image")


# --- decode_image_bytes ----------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_real_photos_decode_in_every_accepted_format(name: str, fmt: str) -> None:
    original = photo(name)
    img = decode_image_bytes(encoded(original, fmt), field="image")
    assert img.mode == "RGB"
    assert img.size == original.size
    difference = np.abs(np.asarray(img, np.int16) - np.asarray(original, np.int16)).mean()
    assert difference < (0.01 if fmt == "PNG" else 6.0)


def test_gif_is_refused_by_content_not_name() -> None:
    gif = encoded(photo("chelsea").convert("P"), "GIF")
    with pytest.raises(InputImageError, match="GIF image; only JPEG, PNG or WebP"):
        decode_image_bytes(gif, field="image")


def test_garbage_is_not_a_valid_image() -> None:
    with pytest.raises(InputImageError, match="is not a valid JPEG, PNG or WebP image"):
        decode_image_bytes(b"hello, this is not an image at all", field="image")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_file_is_refused(fmt: str) -> None:
    payload = encoded(photo("astronaut"), fmt)
    with pytest.raises(InputImageError, match="not a valid JPEG, PNG or WebP image"):
        decode_image_bytes(payload[: len(payload) // 2], field="image")


def test_payload_over_10_mb_is_refused() -> None:
    with pytest.raises(InputImageError) as caught:
        decode_image_bytes(b"\x89PNG" + b"\0" * (11 * MIB), field="image")
    assert caught.value.message == "image: image is larger than 10 MB"


def test_oversized_side_is_refused_from_the_header_alone() -> None:
    # The patched PNG has pixel data for 1x1 only: a decode attempt would report corruption,
    # so this message proves the size was checked before any pixel was read.
    with pytest.raises(InputImageError) as caught:
        decode_image_bytes(png_claiming(5000, 300), field="image")
    assert caught.value.rule == "image is 5000x300 px; at most 4096 px a side"


def test_decompression_bomb_header_is_refused() -> None:
    with pytest.raises(InputImageError, match="at most 4096 px a side"):
        decode_image_bytes(png_claiming(100_000, 100_000), field="image")


def test_custom_side_limit() -> None:
    with pytest.raises(InputImageError, match="at most 256 px a side"):
        decode_image_bytes(encoded(photo("astronaut"), "PNG"), field="image", max_side=256)


def test_exif_orientation_is_applied() -> None:
    # Stored 40x20: left half red, right half blue. Orientation 6 = rotate 90° clockwise to
    # display, so the upright image is 20x40 with red on top.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    img = decode_image_bytes(encoded(stored, "JPEG", exif=exif, quality=95), field="image")
    assert img.size == (20, 40)
    top, bottom = img.getpixel((10, 5)), img.getpixel((10, 35))
    assert top[0] > 200 and top[2] < 60
    assert bottom[2] > 200 and bottom[0] < 60


def test_transparency_is_flattened_onto_white() -> None:
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (255, 0, 0, 255))
    rgba.putpixel((1, 0), (0, 0, 255, 128))
    img = decode_image_bytes(encoded(rgba, "PNG"), field="image")
    assert img.mode == "RGB"
    assert img.getpixel((0, 0)) == (255, 0, 0)
    assert img.getpixel((3, 1)) == (255, 255, 255)
    r, g, b = img.getpixel((1, 0))
    assert 120 <= r <= 135 and 120 <= g <= 135 and b == 255


def test_palette_transparency_and_grey_become_rgb() -> None:
    palette = Image.new("P", (2, 1), 0)
    palette.putpalette([0, 0, 0, 255, 0, 0])
    palette.putpixel((1, 0), 1)
    img = decode_image_bytes(encoded(palette, "PNG", transparency=0), field="image")
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 0)) == (255, 0, 0)
    grey16 = Image.fromarray(np.full((2, 2), 40000, np.uint16))
    assert decode_image_bytes(encoded(grey16, "PNG"), field="image").getpixel((0, 0)) == (
        156,
        156,
        156,
    )


# --- crop and encode -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        ((512, 512), (1536, 512), (512, 171)),
        ((512, 512), (512, 1536), (171, 512)),
        ((451, 300), (1024, 1024), (300, 300)),
        ((600, 400), (1312, 736), (600, 337)),
        ((600, 400), (736, 1312), (224, 400)),
        ((600, 400), (1248, 832), (600, 400)),  # already 3:2
    ],
)
def test_center_crop_keeps_the_limiting_side_whole(
    source: tuple[int, int], target: tuple[int, int], expected: tuple[int, int]
) -> None:
    left, top, right, bottom = center_crop_box(source, target)
    assert (right - left, bottom - top) == expected
    img = Image.new("RGB", source)
    assert center_crop_resize(img, target).size == target


def test_center_crop_keeps_the_middle() -> None:
    original = photo("chelsea")  # 451x300
    cropped = original.crop(center_crop_box(original.size, (1, 1)))
    assert cropped.size == (300, 300)
    left = (451 - 300) // 2
    expected = original.crop((left, 0, left + 300, 300))
    assert np.array_equal(np.asarray(cropped), np.asarray(expected))


def test_center_crop_rejects_a_bad_aspect() -> None:
    with pytest.raises(ValueError):
        center_crop_resize(Image.new("RGB", (4, 4)), (0, 4))


@pytest.mark.parametrize(
    ("fmt", "content_type", "pil_format"),
    [("jpeg", "image/jpeg", "JPEG"), ("png", "image/png", "PNG"), ("webp", "image/webp", "WEBP")],
)
def test_encode_round_trips_and_is_deterministic(
    fmt: str, content_type: str, pil_format: str
) -> None:
    original = photo("astronaut")
    original.info["exif"] = b"Exif\0\0junk"
    first, kind = encode_image(original, fmt)
    second, _ = encode_image(original.copy(), fmt)
    assert kind == content_type
    assert first == second
    reopened = Image.open(io.BytesIO(first))
    assert reopened.format == pil_format
    assert "exif" not in reopened.info
    assert decode_image_bytes(first, field="image").size == original.size


def test_encode_refuses_unknown_formats() -> None:
    with pytest.raises(ValueError):
        encode_image(Image.new("RGB", (2, 2)), "gif")


# --- ImageLoader.check_inline ----------------------------------------------------------------


def test_check_inline_decodes_inline_images_fully() -> None:
    loader = ImageLoader()
    good = base64.b64encode(encoded(photo("coffee"), "WEBP")).decode()
    loader.check_inline(good, "image")
    loader.check_inline("data:image/webp;base64," + good, "image")
    truncated = base64.b64encode(encoded(photo("coffee"), "PNG")[:5000]).decode()
    with pytest.raises(InputImageError, match="not a valid"):
        loader.check_inline(truncated, "style_reference_images[1]")


def test_check_inline_only_checks_url_syntax() -> None:
    loader = ImageLoader()
    loader.check_inline("https://images.example.test/cat.png", "image")  # no DNS, no download
    for refused in ("http://127.0.0.1/a.png", "http://localhost/a.png", "http://[::1]/a.png"):
        with pytest.raises(UnsafeURL):
            loader.check_inline(refused, "image")
    with pytest.raises(UnsafeURL):
        ImageLoader(allow_private=True).check_inline("http://169.254.169.254/", "image")
    ImageLoader(allow_private=True).check_inline("http://127.0.0.1:8000/a.png", "image")
    with pytest.raises(InputImageError, match="no host"):
        loader.check_inline("http:///a.png", "image")


def test_loader_applies_its_byte_limit_to_inline_data() -> None:
    loader = ImageLoader(max_bytes=1000)
    payload = base64.b64encode(encoded(photo("chelsea"), "PNG")).decode()
    with pytest.raises(InputImageError, match="larger than 1000 bytes"):
        loader.load(payload, "image")
