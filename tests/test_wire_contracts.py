"""The Ideogram and OpenAI wires' own rules, as pure functions: field names, sizes, num_images.

Both wires validate through the one `RemixRequest`; these tests pin what each adds (names,
the 2K sizes, `size` mapping) and that errors name the wire's own field."""

from __future__ import annotations

import pytest

from openremix.contract import params
from openremix.contract.errors import InvalidRequest
from openremix.contract.ideogram import parse_ideogram_remix
from openremix.contract.openai_images import nearest_resolution, parse_openai_edit
from tests.support.images import data_uri, photo

IMAGE = data_uri(photo("coffee", size=32))


def rule_of(call, *args) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    return caught.value


def test_ideogram_v3_takes_segmind_names_and_num_images():
    request, n = parse_ideogram_remix(
        {"image": IMAGE, "prompt": "p", "num_images": 4, "aspect_ratio": "16x9",
         "style_codes": ["a1b2c3d4", "00FF00FF"]}, "3")
    assert n == 4
    assert request.resolution == "1312x736"
    assert request.style_codes == ["A1B2C3D4", "00FF00FF"]


@pytest.mark.parametrize("value", [0, 9, "two", 2.5, True])
def test_num_images_outside_1_to_8_names_the_field(value):
    error = rule_of(parse_ideogram_remix, {"image": IMAGE, "prompt": "p", "num_images": value},
                    "3")
    assert error.field == "num_images"
    assert "from 1 to 8" in error.rule


def test_ideogram_v4_uses_text_prompt_and_the_2k_sizes():
    request, n = parse_ideogram_remix({"image": IMAGE, "text_prompt": "p"}, "4")
    assert (request.prompt, request.resolution, n) == ("p", "2048x2048", 1)
    request, _ = parse_ideogram_remix(
        {"image": IMAGE, "text_prompt": "p", "resolution": "2560x1440"}, "4")
    assert request.size == (2560, 1440)
    assert rule_of(parse_ideogram_remix, {"image": IMAGE, "prompt": "p"}, "4").field == \
        "text_prompt"
    error = rule_of(parse_ideogram_remix,
                    {"image": IMAGE, "text_prompt": "p", "resolution": "1024x1024"}, "4")
    assert error.field == "resolution" and "23 supported resolutions" in error.rule


def test_2k_sizes_stay_off_the_3_0_routes():
    error = rule_of(parse_ideogram_remix,
                    {"image": IMAGE, "prompt": "p", "resolution": "2048x2048"}, "3")
    assert error.field == "resolution" and "69 supported" in error.rule


def test_documented_ideogram_fields_we_cannot_honour_are_refused_by_name():
    error = rule_of(parse_ideogram_remix,
                    {"image": IMAGE, "prompt": "p", "style_preset": "BAUHAUS"}, "3")
    assert error.field == "style_preset"


@pytest.mark.parametrize(("size", "made"), [
    ("1024x1024", "1024x1024"), ("auto", "1024x1024"), ("256x256", "1024x1024"),
    ("512x512", "1024x1024"), ("1536x1024", "1248x832"), ("1024x1536", "832x1248"),
    ("1792x1024", "1344x768"), ("1024x1792", "768x1344"), ("1312x736", "1312x736"),
    ("3000x1000", "1536x512"),
])
def test_openai_size_becomes_the_nearest_allowed_resolution(size, made):
    edit = parse_openai_edit({"image": [IMAGE], "prompt": "p", "size": size})
    assert edit.request.resolution == made
    assert made in params.RESOLUTIONS
    assert bool(edit.warnings) == (size not in ("auto", made))


def test_nearest_resolution_prefers_the_aspect_then_the_pixel_count():
    assert nearest_resolution("2048x2048") == "1024x1024"
    assert nearest_resolution("100x300") == "512x1536"


def test_openai_fields_map_onto_the_remix():
    edit = parse_openai_edit({"image": [IMAGE, IMAGE], "prompt": "p", "n": 3,
                              "response_format": "b64_json", "quality": "high",
                              "model": "ideogram-3-remix", "seed": 9})
    assert (edit.num_images, edit.response_format, edit.model) == (3, "b64_json",
                                                                   "ideogram-3-remix")
    assert edit.request.rendering_speed == "QUALITY"
    assert edit.request.output_format == "png"  # OpenAI answers PNG by default
    assert edit.request.seed == 9
    assert len(edit.request.style_reference_images) == 1  # further images are references


@pytest.mark.parametrize(("form", "field"), [
    ({"image": [IMAGE], "prompt": "p", "n": 9}, "n"),
    ({"image": [IMAGE], "prompt": "p", "size": "big"}, "size"),
    ({"image": [IMAGE], "prompt": "p", "response_format": "jpeg"}, "response_format"),
    ({"image": [IMAGE], "prompt": "p", "quality": "ultra"}, "quality"),
    ({"image": [IMAGE], "prompt": "p", "mask": IMAGE}, "mask"),
    ({"image": [IMAGE], "prompt": " "}, "prompt"),
    ({"prompt": "p"}, "image"),
    ({"image": [IMAGE]}, "prompt"),
])
def test_openai_errors_name_openais_field(form, field):
    assert rule_of(parse_openai_edit, form).field == field
