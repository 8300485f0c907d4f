"""DiffusersEngine's FLUX.1 Kontext family on a tiny random-weight Kontext built at test time.

Every component is the real class (CLIP and T5 encoders, FLUX's VAE convention, a
`FluxTransformer2DModel` with guidance embedding), saved and loaded like a downloaded model, run
by the real `FluxKontextPipeline`. Its images are noise-like: the checks are about the schedule,
determinism and direction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
if not hasattr(diffusers, "FluxKontextPipeline"):
    pytest.skip("this diffusers has no FluxKontextPipeline", allow_module_level=True)

from openremix.engine.diffusion import flux_kontext_mapping as km  # noqa: E402
from openremix.engine.diffusion.batching import BatchProgress  # noqa: E402
from openremix.engine.diffusion.engine import DiffusersEngine  # noqa: E402
from openremix.engine.diffusion.flux_kontext import FluxKontextFamily  # noqa: E402
from tests.support.engine_inputs import item, no_op, pixels, remix  # noqa: E402
from tests.support.tiny_flux_kontext import build_tiny_flux_kontext  # noqa: E402

SIDE = 64


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiffusersEngine]:
    folder = build_tiny_flux_kontext(tmp_path_factory.mktemp("tiny-kontext") / "model", seed=0)
    threads = torch.get_num_threads()
    built = DiffusersEngine(model=str(folder), max_side=SIDE, threads=1)
    built.load()
    yield built
    torch.set_num_threads(threads)


def family_of(engine: DiffusersEngine) -> FluxKontextFamily:
    assert isinstance(engine.family, FluxKontextFamily)
    return engine.family


def test_the_family_is_picked_from_model_index_json(engine: DiffusersEngine) -> None:
    assert family_of(engine).name == "flux_kontext"
    assert type(engine.pipe).__name__ == "FluxKontextPipeline"
    assert engine.traits is not None and engine.traits.multiple == 4  # VAE x2, packing x2
    assert remix(engine).details["family"] == "flux_kontext"


def test_the_sliced_schedule_is_the_tail_of_the_full_one(engine: DiffusersEngine) -> None:
    """The scheduler shifts each sigma on its own, so entering at a step keeps the full
    schedule's timesteps from there (what makes the start step a point of the real schedule)."""
    scheduler = engine.pipe.scheduler
    scheduler.set_timesteps(sigmas=km.schedule_sigmas(28, 0), mu=0.7)
    full = scheduler.timesteps.clone()
    scheduler.set_timesteps(sigmas=km.schedule_sigmas(28, 11), mu=0.7)
    assert torch.allclose(scheduler.timesteps, full[11:])


def test_a_higher_image_weight_keeps_more_of_the_input_in_latent_space(
        engine: DiffusersEngine) -> None:
    family = family_of(engine)
    distance = {}
    for weight in (1, 25, 50, 75, 100):
        job = item(image_weight=weight, rendering_speed="DEFAULT")
        _, groups = engine.prepare([job])
        (group,) = groups.values()
        with torch.inference_mode():
            latents = family.run(group, BatchProgress(no_op, [0]), output_type="latent")
            clean = family.encode_image(job.image, (SIDE, SIDE))
            clean = engine.pipe._pack_latents(clean, 1, *clean.shape[1:])
        distance[weight] = float((latents - clean).pow(2).mean().sqrt())
    assert distance[1] > distance[25] > distance[50] > distance[75] > distance[100]


def test_rendering_speed_sets_the_steps_and_changes_the_output(engine: DiffusersEngine) -> None:
    outs = {s: remix(engine, rendering_speed=s, image_weight=1)
            for s in ("TURBO", "DEFAULT", "QUALITY")}
    assert [outs[s].details["steps"] for s in outs] == [14, 28, 50]
    assert outs["DEFAULT"].details["guidance"] == km.GUIDANCE
    assert np.abs(pixels(outs["TURBO"]) - pixels(outs["QUALITY"])).mean() > 0.001


def test_progress_counts_the_denoising_steps_of_the_run(engine: DiffusersEngine) -> None:
    steps: list[tuple[int, int]] = []
    out = engine.remix([item(image_weight=50)], lambda s, t: steps.append((s, t)))[0]
    assert steps == [(s, out.details["denoise_steps"]) for s in range(1, len(steps) + 1)]
    assert len(steps) == out.details["denoise_steps"] == 8  # 14 - int(14 - 14 * 0.52)


def test_a_negative_prompt_runs_true_cfg_in_calls_of_its_own(engine: DiffusersEngine) -> None:
    plain, negative = remix(engine), remix(engine, negative_prompt="blurry")
    assert negative.warnings == [] and negative.details["negative_prompt"] == "blurry"
    assert np.abs(pixels(plain) - pixels(negative)).mean() > 0.001
    with_negative, without = item(negative_prompt="blurry"), item()
    assert engine.batch_key(with_negative.params) != engine.batch_key(without.params)


def test_style_references_fall_back_to_colours_with_a_warning(engine: DiffusersEngine) -> None:
    red = Image.new("RGB", (64, 64), (200, 30, 30))
    styled = remix(engine, refs=[red], style_reference_images=["https://x/red.png"])
    assert styled.warnings == [km.REFERENCE_WARNING]
    assert styled.details["style_reference"] == "color-statistics"


def test_the_folder_layout_is_the_hubs(engine: DiffusersEngine) -> None:
    folder = Path(engine.model)
    for name in ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2",
                 "tokenizer_2", "transformer"):
        assert (folder / name).is_dir(), name


def test_from_the_first_step_the_remix_is_diffusers_own_kontext_edit(
        engine: DiffusersEngine) -> None:
    """Started at step 0 (no API value does that), our run is `FluxKontextPipeline`'s own edit
    of the same image from the same noise: the condition is encoded as the pipeline encodes it."""
    from diffusers.utils.torch_utils import randn_tensor

    from openremix.media.images import center_crop_resize

    family = family_of(engine)
    job = item(prompt="a red cat in the city")
    _, groups = engine.prepare([job])
    (group,) = groups.values()
    plan = group[0].plan
    plan.denoise_steps = plan.steps
    width, height = plan.generation_size
    pipe = engine.pipe
    with torch.inference_mode():
        ours = family.run(group, BatchProgress(no_op, [plan.steps]), output_type="latent")
        noise = randn_tensor((1, 4, height // 2, width // 2),
                             generator=torch.Generator("cpu").manual_seed(job.params.seed))
        theirs = pipe(prompt=plan.prompt, image=center_crop_resize(job.image, (width, height)),
                      _auto_resize=False, height=height, width=width, max_area=width * height,
                      latents=pipe._pack_latents(noise, 1, 4, height // 2, width // 2),
                      num_inference_steps=plan.steps, guidance_scale=plan.guidance,
                      max_sequence_length=family.text_tokens, output_type="latent").images
    assert torch.equal(ours, theirs)
