"""The request rules of CONTRACT.md §3: every broken rule names its field and the rule."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from openremix.contract import params
from openremix.contract.errors import InvalidRequest
from openremix.contract.palettes import PALETTE_PRESETS, hex_to_rgb, palette_colors
from openremix.contract.request import (
    ColorPalette,
    PaletteMember,
    RemixRequest,
    canonical_body,
    parse_remix_request,
)

IMAGE = "https://example.com/input.jpg"
OFFICIAL_SAMPLE: dict[str, Any] = {
    "image": "https://segmind-resources.s3.amazonaws.com/input/ideogram-3-remix-input.jpg",
    "prompt": "A cozy reading nook with warm light, remixed in watercolor",
    "image_weight": 50,
    "style_type": "GENERAL",
    "style_codes": [],
    "magic_prompt": "AUTO",
    "rendering_speed": "DEFAULT",
    "aspect_ratio": "1x1",
}


def body(**extra: Any) -> dict[str, Any]:
    """A minimal valid body with `extra` merged in."""
    return {"image": IMAGE, "prompt": "a cat in a hat", **extra}


def parse(**extra: Any) -> RemixRequest:
    request, _ = parse_remix_request(body(**extra))
    return request


# ---- params ---------------------------------------------------------------------------------


def test_there_are_exactly_69_distinct_resolutions() -> None:
    assert len(params.RESOLUTIONS) == 69
    assert len(set(params.RESOLUTIONS)) == 69
    assert params.DEFAULT_RESOLUTION in params.RESOLUTIONS
    for resolution in params.RESOLUTIONS:
        w, h = resolution.split("x")
        assert int(w) % 32 == 0 and int(h) % 32 == 0, resolution


def test_every_aspect_ratio_maps_to_a_supported_resolution() -> None:
    assert len(params.ASPECT_RATIOS) == 15
    for ratio, resolution in params.ASPECT_RATIOS.items():
        assert resolution in params.RESOLUTIONS, ratio
        rw, rh = (int(x) for x in ratio.split("x"))
        w, h = (int(x) for x in resolution.split("x"))
        assert (rw >= rh) == (w >= h), ratio
        assert math.isclose(w / h, rw / rh, rel_tol=0.05), ratio


def test_each_portrait_ratio_maps_to_the_transpose_of_its_landscape_twin() -> None:
    for ratio, resolution in params.ASPECT_RATIOS.items():
        a, b = ratio.split("x")
        twin = params.ASPECT_RATIOS[f"{b}x{a}"]
        w, h = resolution.split("x")
        assert twin == f"{h}x{w}", ratio


def test_limits_are_as_the_contract_states() -> None:
    assert params.MAX_PROMPT_CHARS == 10_000
    assert params.SEED_MAX == 2**31 - 1
    assert params.MAX_IMAGE_BYTES == params.MAX_STYLE_REFERENCE_BYTES == 10 * 1024 * 1024
    assert params.MAX_IMAGE_SIDE == 4096
    assert params.STYLE_CODE_RE.match("a1B2c3D4")
    assert not params.STYLE_CODE_RE.match("a1B2c3D4\n")
    assert not params.STYLE_CODE_RE.match("a1B2c3D")


# ---- palettes -------------------------------------------------------------------------------


def test_palette_presets_are_the_contract_names_with_4_to_6_valid_colours() -> None:
    assert tuple(PALETTE_PRESETS) == params.PALETTE_PRESET_NAMES
    for name, members in PALETTE_PRESETS.items():
        assert 4 <= len(members) <= 6, name
        for color_hex, weight in members:
            assert params.COLOR_HEX_RE.match(color_hex), (name, color_hex)
            assert color_hex == color_hex.lower()
            assert params.COLOR_WEIGHT_MIN <= weight <= params.COLOR_WEIGHT_MAX


def _mean_rgb(name: str) -> tuple[float, float, float]:
    colors = palette_colors(ColorPalette(name=name))
    return tuple(sum(rgb[i] * w for rgb, w in colors) for i in range(3))  # type: ignore[return-value]


def test_palette_presets_lean_the_way_their_names_say() -> None:
    r, g, b = _mean_rgb("EMBER")
    assert r > g > b
    r, g, b = _mean_rgb("JUNGLE")
    assert g > r and g > b
    r, g, b = _mean_rgb("ULTRAMARINE")
    assert b > r and b > g
    r, g, b = _mean_rgb("MAGIC")
    assert r > g and b > g
    assert min(_mean_rgb("PASTEL")) > 180  # light
    assert min(_mean_rgb("FRESH")) > 120 and _mean_rgb("FRESH")[1] > _mean_rgb("FRESH")[0]


@pytest.mark.parametrize("name", params.PALETTE_PRESET_NAMES)
def test_palette_colors_of_a_preset_are_rgb_with_weights_summing_to_one(name: str) -> None:
    colors = palette_colors(ColorPalette(name=name))
    assert len(colors) == len(PALETTE_PRESETS[name])
    assert math.isclose(sum(w for _, w in colors), 1.0)
    for rgb, w in colors:
        assert len(rgb) == 3 and all(0 <= c <= 255 for c in rgb) and w > 0


def test_palette_colors_of_members_keep_order_and_normalise_weights() -> None:
    palette = ColorPalette(
        members=[
            PaletteMember(color_hex="#FF0000", color_weight=1.0),
            PaletteMember(color_hex="#00ff00", color_weight=0.5),
            PaletteMember(color_hex="#0000ff", color_weight=0.5),
        ]
    )
    assert palette_colors(palette) == [((255, 0, 0), 0.5), ((0, 255, 0), 0.25), ((0, 0, 255), 0.25)]
    assert hex_to_rgb("#1a2B3c") == (26, 43, 60)


# ---- good bodies ----------------------------------------------------------------------------


def test_the_official_sample_body_is_accepted() -> None:
    request, warnings = parse_remix_request(OFFICIAL_SAMPLE)
    assert warnings == []
    assert request.resolution == "1024x1024" and request.aspect_ratio == "1x1"
    assert request.size == (1024, 1024)
    assert request.style_codes == [] and request.style_type == "GENERAL"
    assert request.image_weight == 50 and request.seed is None


def test_defaults_follow_the_contract() -> None:
    request = parse()
    assert request.image_weight == 50
    assert request.seed is None
    assert request.resolution == params.DEFAULT_RESOLUTION and request.size == (1024, 1024)
    assert request.aspect_ratio is None
    assert request.rendering_speed == "DEFAULT"
    assert request.magic_prompt == "AUTO"
    assert request.style_type == "GENERAL"
    assert request.negative_prompt is None
    assert request.style_codes == [] and request.style_reference_images == []
    assert request.color_palette is None
    assert request.output_format == "jpeg" and request.base64 is False


@pytest.mark.parametrize(("ratio", "resolution"), list(params.ASPECT_RATIOS.items()))
def test_aspect_ratio_selects_its_resolution(ratio: str, resolution: str) -> None:
    request = parse(aspect_ratio=ratio)
    assert request.aspect_ratio == ratio
    assert request.resolution == resolution
    w, h = resolution.split("x")
    assert request.size == (int(w), int(h))


@pytest.mark.parametrize("resolution", params.RESOLUTIONS)
def test_every_resolution_is_accepted(resolution: str) -> None:
    assert parse(resolution=resolution).resolution == resolution


@pytest.mark.parametrize("absent", [None, []])
def test_null_and_empty_list_mean_not_given(absent: Any) -> None:
    keys = [
        "image_weight", "seed", "resolution", "aspect_ratio", "rendering_speed", "magic_prompt",
        "negative_prompt", "style_type", "style_codes", "style_reference_images",
        "color_palette", "output_format", "base64",
    ]  # fmt: skip
    request, warnings = parse_remix_request(body(**dict.fromkeys(keys, absent)))
    assert warnings == []
    assert request == parse()


def test_null_resolution_beside_an_aspect_ratio_is_not_a_conflict() -> None:
    assert parse(aspect_ratio="16x9", resolution=None).resolution == "1312x736"


def test_unknown_keys_are_ignored_with_a_warning_each() -> None:
    request, warnings = parse_remix_request(body(foo=1, num_images=None, steps=[]))
    assert request == parse()
    assert warnings == [
        "unknown parameter 'foo' ignored",
        "unknown parameter 'num_images' ignored",
        "unknown parameter 'steps' ignored",
    ]


@pytest.mark.parametrize(
    ("extra", "field", "expected"),
    [
        ({"rendering_speed": "turbo"}, "rendering_speed", "TURBO"),
        ({"rendering_speed": "Balanced"}, "rendering_speed", "BALANCED"),
        ({"rendering_speed": "flash"}, "rendering_speed", "FLASH"),
        ({"magic_prompt": "off"}, "magic_prompt", "OFF"),
        ({"style_type": "realistic"}, "style_type", "REALISTIC"),
        ({"style_type": " stylized "}, "style_type", "STYLIZED"),
        ({"output_format": "PNG"}, "output_format", "png"),
        ({"output_format": "jpg"}, "output_format", "jpeg"),
        ({"output_format": "WebP"}, "output_format", "webp"),
        ({"resolution": "1312X736"}, "resolution", "1312x736"),
        ({"aspect_ratio": "16:9"}, "aspect_ratio", "16x9"),
        ({"aspect_ratio": "9X16"}, "aspect_ratio", "9x16"),
        ({"style_codes": ["a1b2c3d4", "DEADbeef"]}, "style_codes", ["A1B2C3D4", "DEADBEEF"]),
        ({"image_weight": 1}, "image_weight", 1),
        ({"image_weight": 100}, "image_weight", 100),
        ({"image_weight": 75.0}, "image_weight", 75),
        ({"seed": 0}, "seed", 0),
        ({"seed": params.SEED_MAX}, "seed", params.SEED_MAX),
        ({"seed": 42.0}, "seed", 42),
        ({"negative_prompt": ""}, "negative_prompt", None),
        ({"negative_prompt": "   "}, "negative_prompt", None),
        ({"negative_prompt": "blur"}, "negative_prompt", "blur"),
        ({"base64": True}, "base64", True),
        ({"image": "  data:image/png;base64,AAAA "}, "image", "data:image/png;base64,AAAA"),
        ({"style_reference_images": [IMAGE, "iVBORw0K"]}, "style_reference_images",
         [IMAGE, "iVBORw0K"]),
    ],
)  # fmt: skip
def test_good_values_are_accepted_and_normalised(
    extra: dict[str, Any], field: str, expected: Any
) -> None:
    assert getattr(parse(**extra), field) == expected


def test_prompt_is_kept_verbatim() -> None:
    assert parse(prompt="  a cat  ").prompt == "  a cat  "
    assert parse(prompt="x" * 10_000).prompt == "x" * 10_000


def test_style_codes_with_an_explicit_general_style_type_are_accepted() -> None:
    request = parse(style_codes=["A1B2C3D4"], style_type="general")
    assert request.style_codes == ["A1B2C3D4"] and request.style_type == "GENERAL"


@pytest.mark.parametrize("name", ["EMBER", "fresh", "Jungle", "magic", "MELON", "mosaic",
                                  "pastel", "ultramarine"])  # fmt: skip
def test_palette_presets_are_accepted_in_any_case(name: str) -> None:
    palette = parse(color_palette={"name": name}).color_palette
    assert palette is not None and palette.name == name.upper() and palette.members is None


def test_palette_members_are_normalised_and_weight_defaults_to_one() -> None:
    palette = parse(
        color_palette={
            "members": [
                {"color_hex": "#AABBCC", "color_weight": 0.05},
                {"color_hex": "#112233"},
                {"color_hex": "#445566", "color_weight": 1},
                {"color_hex": "#778899", "color_weight": None},
            ],
            "name": None,
        }
    ).color_palette
    assert palette is not None and palette.name is None and palette.members is not None
    assert [(m.color_hex, m.color_weight) for m in palette.members] == [
        ("#aabbcc", 0.05), ("#112233", 1.0), ("#445566", 1.0), ("#778899", 1.0),
    ]  # fmt: skip


def test_palette_name_beside_empty_members_is_a_preset() -> None:
    palette = parse(color_palette={"name": "ember", "members": []}).color_palette
    assert palette is not None and palette.name == "EMBER"


def test_a_validated_request_round_trips_through_its_dump() -> None:
    request = parse(
        aspect_ratio="16x9", seed=7, style_codes=["a1b2c3d4"],
        color_palette={"members": [{"color_hex": "#ABCDEF", "color_weight": 0.5}]},
    )  # fmt: skip
    again = RemixRequest.model_validate(request.model_dump(mode="json"))
    assert again == request
    assert again.resolution == "1312x736"


def test_canonical_body_is_stable_and_ignores_spelling() -> None:
    a = parse(rendering_speed="turbo", style_codes=["a1b2c3d4"], output_format="jpg")
    b, _ = parse_remix_request(
        {"output_format": "jpeg", "style_codes": ["A1B2C3D4"], "rendering_speed": "TURBO",
         "prompt": "a cat in a hat", "image": IMAGE, "seed": None, "unknown": 1}
    )  # fmt: skip
    assert canonical_body(a) == canonical_body(b)
    assert json.loads(canonical_body(a))["rendering_speed"] == "TURBO"
    assert canonical_body(a) != canonical_body(parse(seed=1))


# ---- bad bodies -----------------------------------------------------------------------------

TOO_LONG = "x" * 10_001
MEMBER = {"color_hex": "#aabbcc", "color_weight": 0.5}

BAD_BODIES: list[tuple[str, dict[str, Any], str, str]] = [
    # (id, body, field, text the rule must contain)
    ("image missing", {"prompt": "p"}, "image", "is required"),
    ("image null", {"image": None, "prompt": "p"}, "image", "is required"),
    ("image not a string", body(image=123), "image", "must be a string"),
    ("image a list", body(image=[IMAGE]), "image", "must be a string"),
    ("image empty", body(image="  "), "image", "must not be empty"),
    ("prompt missing", {"image": IMAGE}, "prompt", "is required"),
    ("prompt empty", body(prompt=""), "prompt", "must not be empty"),
    ("prompt blank", body(prompt=" \n\t "), "prompt", "must not be empty"),
    ("prompt not a string", body(prompt=5), "prompt", "must be a string"),
    ("prompt too long", body(prompt=TOO_LONG), "prompt", "at most 10,000 characters"),
    ("weight zero", body(image_weight=0), "image_weight", "must be an integer from 1 to 100"),
    ("weight 101", body(image_weight=101), "image_weight", "must be an integer from 1 to 100"),
    ("weight negative", body(image_weight=-5), "image_weight", "must be an integer from 1 to 100"),
    ("weight fraction", body(image_weight=50.5), "image_weight", "must be an integer from 1"),
    ("weight string", body(image_weight="50"), "image_weight", "must be an integer from 1"),
    ("weight bool", body(image_weight=True), "image_weight", "must be an integer from 1"),
    ("weight nan", body(image_weight=float("nan")), "image_weight", "must be an integer"),
    ("seed negative", body(seed=-1), "seed", "must be an integer from 0 to 2147483647"),
    ("seed too big", body(seed=2**31), "seed", "must be an integer from 0 to 2147483647"),
    ("seed string", body(seed="42"), "seed", "must be an integer from 0"),
    ("seed bool", body(seed=False), "seed", "must be an integer from 0"),
    ("seed fraction", body(seed=1.5), "seed", "must be an integer from 0"),
    ("resolution unknown", body(resolution="1000x1000"), "resolution",
     "must be one of the 69 supported resolutions such as 1024x1024 (got '1000x1000')"),
    ("resolution not a string", body(resolution=1024), "resolution", "one of the 69"),
    ("aspect ratio unknown", body(aspect_ratio="7x5"), "aspect_ratio",
     "must be one of the 15 aspect ratios"),
    ("aspect ratio not a string", body(aspect_ratio=1.5), "aspect_ratio", "one of the 15"),
    ("aspect ratio and resolution", body(aspect_ratio="1x1", resolution="1024x1024"),
     "aspect_ratio", "cannot be combined with resolution; give one of them"),
    ("aspect ratio and bad resolution", body(aspect_ratio="1x1", resolution="1x1"),
     "aspect_ratio", "cannot be combined with resolution"),
    ("rendering speed unknown", body(rendering_speed="FAST"), "rendering_speed",
     "must be one of TURBO, DEFAULT, QUALITY, FLASH, BALANCED (got 'FAST')"),
    ("rendering speed number", body(rendering_speed=1), "rendering_speed", "must be one of"),
    ("magic prompt unknown", body(magic_prompt="YES"), "magic_prompt",
     "must be one of AUTO, ON, OFF"),
    ("magic prompt bool", body(magic_prompt=True), "magic_prompt", "must be one of AUTO, ON"),
    ("style type unknown", body(style_type="ANIME"), "style_type",
     "must be one of AUTO, GENERAL, REALISTIC, DESIGN, FICTION, STYLIZED"),
    ("negative prompt not a string", body(negative_prompt=["x"]), "negative_prompt",
     "must be a string"),
    ("negative prompt too long", body(negative_prompt=TOO_LONG), "negative_prompt",
     "at most 10,000 characters"),
    ("style codes not a list", body(style_codes="A1B2C3D4"), "style_codes",
     "must be a list of strings"),
    ("style code too short", body(style_codes=["A1B2C3D4", "A1B2C3"]), "style_codes[1]",
     "must be a string of 8 hex digits"),
    ("style code not hex", body(style_codes=["GGGGGGGG"]), "style_codes[0]", "8 hex digits"),
    ("style code not a string", body(style_codes=[12345678]), "style_codes[0]",
     "must be a string of 8 hex digits"),
    ("too many style codes", body(style_codes=["A1B2C3D4"] * 17), "style_codes",
     "at most 16 codes"),
    ("style codes with references", body(style_codes=["A1B2C3D4"], style_reference_images=[IMAGE]),
     "style_codes", "cannot be combined with style_reference_images"),
    ("style codes with realistic", body(style_codes=["A1B2C3D4"], style_type="REALISTIC"),
     "style_codes", "cannot be combined with style_type REALISTIC"),
    ("style codes with auto", body(style_codes=["A1B2C3D4"], style_type="auto"),
     "style_codes", "cannot be combined with style_type AUTO"),
    ("references not a list", body(style_reference_images=IMAGE), "style_reference_images",
     "must be a list of strings"),
    ("reference not a string", body(style_reference_images=[IMAGE, 3]),
     "style_reference_images[1]", "must be a non-empty string"),
    ("reference empty", body(style_reference_images=[""]), "style_reference_images[0]",
     "must be a non-empty string"),
    ("too many references", body(style_reference_images=[IMAGE] * 11), "style_reference_images",
     "at most 10 images"),
    ("palette not an object", body(color_palette="EMBER"), "color_palette",
     "must be an object"),
    ("palette empty object", body(color_palette={}), "color_palette",
     "must give name (one of EMBER"),
    ("palette empty members", body(color_palette={"members": []}), "color_palette",
     "must give name"),
    ("palette name and members", body(color_palette={"name": "EMBER", "members": [MEMBER]}),
     "color_palette", "give either name or members, not both"),
    ("palette unknown key", body(color_palette={"name": "EMBER", "colour": "red"}),
     "color_palette", "unknown key 'colour'"),
    ("palette unknown preset", body(color_palette={"name": "SUNSET"}), "color_palette.name",
     "must be one of EMBER, FRESH, JUNGLE, MAGIC, MELON, MOSAIC, PASTEL, ULTRAMARINE"),
    ("palette name not a string", body(color_palette={"name": 1}), "color_palette.name",
     "must be one of EMBER"),
    ("palette members not a list", body(color_palette={"members": MEMBER}),
     "color_palette.members", "must be a list of 1 to 8 colours"),
    ("palette too many members", body(color_palette={"members": [MEMBER] * 9}),
     "color_palette.members", "must be a list of 1 to 8 colours (got 9)"),
    ("palette member not an object", body(color_palette={"members": [MEMBER, "#aabbcc"]}),
     "color_palette.members[1]", "must be an object like"),
    ("palette member unknown key",
     body(color_palette={"members": [MEMBER, {"color_hex": "#aabbcc", "weight": 1}]}),
     "color_palette.members[1]", "unknown key 'weight'"),
    ("palette member hex missing", body(color_palette={"members": [{"color_weight": 0.5}]}),
     "color_palette.members[0].color_hex", "is required"),
    ("palette member hex bad",
     body(color_palette={"members": [MEMBER, MEMBER, {"color_hex": "red"}]}),
     "color_palette.members[2].color_hex", "must be a colour written #rrggbb"),
    ("palette member hex without #", body(color_palette={"members": [{"color_hex": "aabbcc"}]}),
     "color_palette.members[0].color_hex", "#rrggbb"),
    ("palette member hex short", body(color_palette={"members": [{"color_hex": "#abc"}]}),
     "color_palette.members[0].color_hex", "#rrggbb"),
    ("palette member weight low",
     body(color_palette={"members": [{"color_hex": "#aabbcc", "color_weight": 0.01}]}),
     "color_palette.members[0].color_weight", "must be a number from 0.05 to 1.0"),
    ("palette member weight high",
     body(color_palette={"members": [{"color_hex": "#aabbcc", "color_weight": 1.5}]}),
     "color_palette.members[0].color_weight", "must be a number from 0.05 to 1.0"),
    ("palette member weight string",
     body(color_palette={"members": [{"color_hex": "#aabbcc", "color_weight": "0.5"}]}),
     "color_palette.members[0].color_weight", "must be a number"),
    ("palette member weight bool",
     body(color_palette={"members": [{"color_hex": "#aabbcc", "color_weight": True}]}),
     "color_palette.members[0].color_weight", "must be a number"),
    ("output format unknown", body(output_format="gif"), "output_format",
     "must be one of jpeg, png, webp"),
    ("base64 string", body(base64="true"), "base64", "must be true or false"),
    ("base64 number", body(base64=1), "base64", "must be true or false"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("bad", "field", "rule"), [case[1:] for case in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
def test_a_broken_rule_names_its_field_and_the_rule(
    bad: dict[str, Any], field: str, rule: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_remix_request(bad)
    assert caught.value.field == field
    assert rule in caught.value.rule
    assert str(caught.value) == f"{field}: {caught.value.rule}"


@pytest.mark.parametrize("bad", [None, [], "{}", 3, [{"image": IMAGE}]])
def test_a_body_that_is_not_an_object_is_refused(bad: Any) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_remix_request(bad)
    assert (caught.value.field, caught.value.rule) == ("body", "must be a JSON object")


def test_long_offending_values_are_shortened_in_the_message() -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_remix_request(body(resolution="9" * 500))
    assert len(caught.value.message) < 200


def test_a_model_built_directly_rejects_an_aspect_ratio_that_disagrees_with_resolution() -> None:
    with pytest.raises(ValueError, match="disagrees with resolution"):
        RemixRequest.model_validate(body(aspect_ratio="16x9", resolution="1024x1024"))
