"""DiffusersEngine's Ideogram 4 family on a tiny random-weight Ideogram 4 built at test time.

Every component is the real class (Qwen3-VL encoder, FLUX.2 VAE, two Ideogram 4 transformers,
the prompt enhancer head), saved and loaded like a downloaded model. Its images are noise-like:
the checks are about the maths against diffusers' own pipeline, determinism and direction.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("diffusers.pipelines.ideogram4")

from openremix.engine.base import EngineInput  # noqa: E402
from openremix.engine.diffusion import ideogram4_mapping as im  # noqa: E402
from openremix.engine.diffusion.batching import BatchProgress  # noqa: E402
from openremix.engine.diffusion.engine import DiffusersEngine  # noqa: E402
from tests.support.engine_inputs import item, no_op, photo, pixels, remix  # noqa: E402
from tests.support.tiny_ideogram4 import build_tiny_ideogram4  # noqa: E402

SIDE = 64
TINY = {"max_side": SIDE, "threads": 1, "enhancer_max_tokens": 12}
UPSTREAM = getattr(diffusers, "Ideogram4Img2ImgPipeline", None)


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The tiny model with its enhancer head, and the same model without it."""
    root = tmp_path_factory.mktemp("tiny-ideogram4")
    with_head = build_tiny_ideogram4(root / "with-head", seed=0, enhancer_head=True)
    plain = root / "plain"
    shutil.copytree(with_head, plain, ignore=shutil.ignore_patterns("prompt_enhancer_head"))
    index = json.loads((plain / "model_index.json").read_text())
    index["prompt_enhancer_head"] = [None, None]
    (plain / "model_index.json").write_text(json.dumps(index))
    return {"with-head": with_head, "plain": plain}


@pytest.fixture(scope="module")
def engines(folders: dict[str, Path]) -> Iterator[dict[str, DiffusersEngine]]:
    threads = torch.get_num_threads()
    built = {name: DiffusersEngine(model=str(folder), **TINY) for name, folder in folders.items()}
    for engine in built.values():
        engine.load()
    yield built
    torch.set_num_threads(threads)


@pytest.fixture
def engine(engines: dict[str, DiffusersEngine]) -> DiffusersEngine:
    return engines["plain"]


def test_the_family_is_picked_from_model_index_json(engines: dict[str, DiffusersEngine]) -> None:
    engine = engines["plain"]
    assert engine.family is not None and engine.family.name == "ideogram4"
    assert type(engine.pipe).__name__ == ("Ideogram4Img2ImgPipeline" if UPSTREAM
                                          else "Ideogram4Pipeline")
    assert engine.pipe.prompt_enhancer_head is None
    assert engines["with-head"].pipe.prompt_enhancer_head is not None
    assert engine.traits is not None and engine.traits.multiple == 4  # VAE x2, packing x2


def _latent_run(engine: DiffusersEngine, job: EngineInput) -> torch.Tensor:
    _, groups = engine.prepare([job])
    (group,) = groups.values()
    assert engine.family is not None
    with torch.inference_mode():
        return engine.family.denoise(group, BatchProgress(no_op, [0]))  # type: ignore[attr-defined]


def test_from_the_first_step_the_remix_is_diffusers_own_text_to_image_loop(
        engine: DiffusersEngine) -> None:
    """Started at step 0 (no API value does that) from the same start latents, our loop equals
    Ideogram4Pipeline's bit for bit: prompt encoding, schedule, guidance and Euler steps."""
    from openremix.engine.diffusion import ideogram4 as i4

    job = item(prompt="a red cat in the city")
    _, groups = engine.prepare([job])
    (group,) = groups.values()
    plan = group[0].plan
    plan.denoise_steps = plan.steps  # start at step 0
    family = engine.family
    assert isinstance(family, i4.Ideogram4Family)
    width, height = plan.generation_size
    generator = torch.Generator("cpu").manual_seed(job.params.seed)
    with torch.inference_mode():
        ours = family.denoise(group, BatchProgress(no_op, [plan.steps]))
        engine.pipe.scheduler.set_timesteps(sigmas=i4.schedule_sigmas(plan.steps, height, width))
        clean = family.encode_image(job.image, (width, height), generator)
        noise = torch.randn(clean.shape, generator=generator)
        start = engine.pipe.scheduler.scale_noise(clean, engine.pipe.scheduler.timesteps[:1],
                                                  noise)
        theirs = diffusers.Ideogram4Pipeline(**engine.pipe.components)(
            prompt=plan.prompt, height=height, width=width, num_inference_steps=plan.steps,
            guidance_schedule=list(plan.guidance_schedule), max_sequence_length=plan.text_tokens,
            latents=start, output_type="latent").images
    assert torch.equal(ours, theirs)


@pytest.mark.skipif(UPSTREAM is None, reason="this diffusers has no Ideogram4Img2ImgPipeline")
def test_our_loop_gives_upstreams_img2img_result(engine: DiffusersEngine) -> None:
    job = item(prompt="a red cat in the city", image_weight=40)
    via_upstream = engine.remix([job], no_op)[0]  # a solo job is one upstream call
    assert engine.family is not None
    engine.family.upstream = False  # type: ignore[attr-defined]
    try:
        ours = engine.remix([job], no_op)[0]
    finally:
        engine.family.upstream = True  # type: ignore[attr-defined]
    assert ours.image is not None and via_upstream.image is not None
    assert ours.image.tobytes() == via_upstream.image.tobytes()


def test_a_higher_image_weight_keeps_more_of_the_input_in_latent_space(
        engine: DiffusersEngine) -> None:
    from openremix.engine.diffusion import ideogram4 as i4

    family = engine.family
    assert isinstance(family, i4.Ideogram4Family)
    distance = {}
    for weight in (1, 25, 50, 75, 100):
        job = item(image_weight=weight, rendering_speed="DEFAULT")
        latents = _latent_run(engine, job)
        with torch.inference_mode():
            clean = family.encode_image(job.image, (SIDE, SIDE))
        distance[weight] = float((latents - clean).pow(2).mean().sqrt())
    assert distance[1] > distance[25] > distance[50] > distance[75] > distance[100]


def test_rendering_speed_sets_the_steps_and_changes_the_output(engine: DiffusersEngine) -> None:
    outs = {s: remix(engine, rendering_speed=s) for s in ("TURBO", "DEFAULT", "QUALITY")}
    assert [outs[s].details["steps"] for s in outs] == [12, 24, 48]
    assert outs["QUALITY"].details["guidance_schedule"][-3:] == [3.0, 3.0, 3.0]
    assert np.abs(pixels(outs["TURBO"]) - pixels(outs["QUALITY"])).mean() > 0.002


def test_progress_counts_the_denoising_steps_of_the_run(engine: DiffusersEngine) -> None:
    steps: list[tuple[int, int]] = []
    out = engine.remix([item(image_weight=50)], lambda s, t: steps.append((s, t)))[0]
    assert steps == [(s, out.details["denoise_steps"]) for s in range(1, len(steps) + 1)]


def test_a_negative_prompt_is_reported_unused(engine: DiffusersEngine) -> None:
    plain, negative = remix(engine), remix(engine, negative_prompt="blurry")
    assert negative.warnings == [im.NEGATIVE_WARNING]
    assert plain.image is not None and negative.image is not None
    assert negative.image.tobytes() == plain.image.tobytes()


def test_style_references_fall_back_to_colours_with_a_warning(engine: DiffusersEngine) -> None:
    red = Image.new("RGB", (64, 64), (200, 30, 30))
    styled = remix(engine, refs=[red], style_reference_images=["https://x/red.png"])
    assert styled.warnings == [im.REFERENCE_WARNING]
    assert styled.details["style_reference"] == "color-statistics"


def test_magic_prompt_uses_the_models_caption_enhancer_seeded(
        engines: dict[str, DiffusersEngine]) -> None:
    engine = engines["with-head"]
    a = remix(engine, prompt="a cat", magic_prompt="ON", seed=3)
    b = remix(engine, prompt="a cat", magic_prompt="ON", seed=3)
    assert a.prompt == b.prompt and a.prompt != "a cat"  # the tiny head writes noise
    assert a.details["conditioning_prompt"] == a.prompt
    assert a.image is not None and b.image is not None and a.image.tobytes() == b.image.tobytes()
    long_prompt = "a photo of a grey cat sitting on a red brick wall in the city at night"
    assert remix(engine, prompt=long_prompt, magic_prompt="AUTO").prompt == long_prompt
    template = remix(engines["plain"], prompt="cat", magic_prompt="ON")
    assert template.prompt.startswith("cat, ")


def test_auto_magic_prompt_enhances_a_short_prompt_with_the_models_head(
        engines: dict[str, DiffusersEngine]) -> None:
    engine, plain = engines["with-head"], engines["plain"]
    assert engine.family is not None and plain.family is not None
    short = item(prompt="a cat", magic_prompt="AUTO", seed=3)
    on = item(prompt="a cat", magic_prompt="ON", seed=3).params
    head_caption = engine.family.used_prompt(on, 3, short.image)
    template = plain.family.used_prompt(short.params, 3, short.image)
    assert template != "a cat"  # AUTO enhances a short prompt on either model ...
    auto = engine.remix([short], no_op)[0]
    assert auto.prompt == head_caption != template  # ... with the head where it is loaded
    assert auto.details["conditioning_prompt"] == auto.prompt


# -- the vision tower (Qwen3-VL's `visual`): the enhancer sees the input and the references ----


@contextmanager
def without_vision(engine: DiffusersEngine) -> Iterator[None]:
    """The text encoder without its vision tower, for the block (`monkeypatch` would delete the
    submodule on undo)."""
    encoder = engine.pipe.text_encoder
    visual = encoder.visual
    encoder.visual = None
    try:
        yield
    finally:
        encoder.visual = visual


def _caption(engine: DiffusersEngine, image: Image.Image, seed: int = 3) -> str:
    assert engine.family is not None
    params = item(prompt="a cat", magic_prompt="ON", seed=seed).params
    return engine.family.used_prompt(params, seed, image)


def test_with_a_vision_tower_the_caption_depends_on_the_input_image(
        engines: dict[str, DiffusersEngine]) -> None:
    from openremix.engine.diffusion import ideogram4_vision as iv

    engine = engines["with-head"]
    assert iv.has_vision(engine.pipe)
    astronaut = _caption(engine, photo())
    assert astronaut == _caption(engine, photo())  # seeded: same input, same caption
    assert astronaut != _caption(engine, photo("coffee"))


def test_without_a_vision_tower_the_caption_is_diffusers_text_only_one(
        engines: dict[str, DiffusersEngine]) -> None:
    from openremix.engine.diffusion import ideogram4 as i4
    from openremix.engine.diffusion import ideogram4_vision as iv

    engine = engines["with-head"]
    with without_vision(engine):
        assert not iv.has_vision(engine.pipe)
        caption = _caption(engine, photo())
        assert caption == _caption(engine, photo("coffee"))
    with torch.inference_mode():
        expected = engine.pipe.upsample_prompt(
            "a cat", height=1024, width=1024, temperature=i4.ENHANCER_TEMPERATURE,
            max_new_tokens=TINY["enhancer_max_tokens"],
            generator=torch.Generator("cpu").manual_seed(3))[0].strip()
    assert caption == expected


def test_with_a_vision_tower_references_are_described_into_the_caption(
        engines: dict[str, DiffusersEngine]) -> None:
    engine = engines["with-head"]
    red = Image.new("RGB", (64, 64), (200, 30, 30))
    plain = remix(engine)
    styled = remix(engine, refs=[red], style_reference_images=["https://x/red.png"])
    assert styled.warnings == []
    caption = styled.details["conditioning_prompt"]
    assert caption.startswith(plain.details["conditioning_prompt"] + ", style reference: ")
    assert styled.details["styles"][-1]["source"] == "vision tower"
    assert styled.details["style_reference"] == "caption"
    other = remix(engine, refs=[photo("coffee")], style_reference_images=["https://x/c.png"])
    assert other.details["conditioning_prompt"] != caption
    assert remix(engine, refs=[red], style_reference_images=["https://x/red.png"]).details[
        "conditioning_prompt"] == caption  # the description depends on the references alone
    with without_vision(engine):
        fallback = remix(engine, refs=[red], style_reference_images=["https://x/red.png"])
    assert fallback.warnings == [im.REFERENCE_WARNING]
    assert fallback.details["conditioning_prompt"] == plain.details["conditioning_prompt"]


def test_a_batch_with_described_references_gives_each_job_its_solo_bytes(
        engines: dict[str, DiffusersEngine]) -> None:
    """Two jobs share a text-token bucket until the description is woven in; then they pad
    differently and run as two loops, with progress counting on across both."""
    engine = engines["with-head"]
    assert engine.family is not None
    refs = {"refs": [photo("coffee")], "style_reference_images": ["https://x/c.png"]}
    prompt = "a cat"
    while engine.family.plan(item(prompt=prompt).params, prompt, SIDE).text_tokens == 64:
        long_prompt, prompt = prompt, prompt + " cat"
    jobs = [item(prompt="a dog", seed=1, **refs), item(prompt=long_prompt, seed=2, **refs)]
    steps: list[tuple[int, int]] = []
    batch = engine.remix(jobs, lambda s, t: steps.append((s, t)))
    assert [t for _, t in steps] == [steps[-1][1]] * len(steps)
    assert steps[-1][1] == 2 * batch[0].details["denoise_steps"]  # two loops
    assert [s for s, _ in steps] == list(range(1, len(steps) + 1))
    assert batch[1].details["conditioning_prompt"].startswith(long_prompt)
    for job, out in zip(jobs, batch, strict=True):
        alone = engine.remix([job], no_op)[0]
        assert out.image is not None and alone.image is not None
        assert out.image.tobytes() == alone.image.tobytes()
