"""What every model family of the diffusion engine promises, on each family's tiny random model:
exact output sizes, seeded determinism, batches that change nothing, progress and cancel, live
previews.

The family files (`test_engine_diffusers.py`, `test_engine_ideogram4.py`,
`test_engine_flux_kontext.py`) test what is particular to each family.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from openremix.engine.base import JobCancelled  # noqa: E402
from openremix.engine.diffusion.engine import DiffusersEngine  # noqa: E402
from tests.support.engine_inputs import item, no_op, photo, pixels, remix  # noqa: E402

SIDE = 64


def _build(kind: str, folder: Path) -> Path:
    if kind in ("sd", "sdxl"):
        from tests.support.tiny_pipelines import build_tiny_pipeline

        return build_tiny_pipeline(folder, kind, seed=0)
    if kind == "ideogram4":
        pytest.importorskip("diffusers.pipelines.ideogram4")
        from tests.support.tiny_ideogram4 import build_tiny_ideogram4

        return build_tiny_ideogram4(folder, seed=0)
    if not hasattr(diffusers, "FluxKontextPipeline"):
        pytest.skip("this diffusers has no FluxKontextPipeline")
    from tests.support.tiny_flux_kontext import build_tiny_flux_kontext

    return build_tiny_flux_kontext(folder, seed=0)


@pytest.fixture(scope="module", params=["sd", "sdxl", "ideogram4", "flux_kontext"])
def engine(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[DiffusersEngine]:
    folder = _build(request.param, tmp_path_factory.mktemp(f"tiny-{request.param}") / "model")
    threads = torch.get_num_threads()
    built = DiffusersEngine(model=str(folder), max_side=SIDE, threads=1, enhancer_max_tokens=12)
    built.load()
    yield built
    torch.set_num_threads(threads)  # `threads=1` is process-wide: give other modules theirs


def test_output_is_exactly_the_requested_size(engine: DiffusersEngine) -> None:
    assert engine.traits is not None
    for resolution in ("1024x1024", "1536x512", "704x1408"):
        out = remix(engine, resolution=resolution)
        w, h = (int(v) for v in resolution.split("x"))
        assert out.image is not None and out.image.size == (w, h) and out.image.mode == "RGB"
        gw, gh = out.details["generation_size"]
        assert max(gw, gh) <= SIDE and (gw >= gh) == (w >= h)
        assert gw % engine.traits.multiple == gh % engine.traits.multiple == 0
    out = remix(engine, aspect_ratio="9x16")
    assert out.image is not None and out.image.size == (736, 1312)


def test_same_seed_same_bytes_another_seed_and_another_input_differ(
        engine: DiffusersEngine) -> None:
    a, b = remix(engine, seed=11), remix(engine, seed=11)
    assert a.image is not None and b.image is not None and a.image.tobytes() == b.image.tobytes()
    assert np.abs(pixels(a) - pixels(remix(engine, seed=12))).mean() > 0.002
    other_input = remix(engine, seed=11, image=photo("coffee"))
    assert np.abs(pixels(a) - pixels(other_input)).mean() > 0.002


def test_a_batch_gives_each_job_the_bytes_it_gets_alone(engine: DiffusersEngine) -> None:
    jobs = [item(prompt="a cat", seed=1), item(prompt="a red dog", seed=2, image=photo("chelsea")),
            item(prompt="watercolor sea", seed=3, image=photo("coffee"))]
    assert len({engine.batch_key(job.params) for job in jobs}) == 1
    steps: list[tuple[int, int]] = []
    batch = engine.remix(jobs, lambda s, t: steps.append((s, t)))
    total = steps[-1][1]
    assert steps == [(s, total) for s in range(1, total + 1)]  # one group, one run
    for job, out in zip(jobs, batch, strict=True):
        alone = engine.remix([job], no_op)[0]
        assert out.image is not None and alone.image is not None
        assert out.image.tobytes() == alone.image.tobytes()


def test_progress_counts_every_step_and_cancel_stops_between_steps(
        engine: DiffusersEngine) -> None:
    steps: list[tuple[int, int]] = []
    out = remix(engine, on_step=lambda s, t: steps.append((s, t)), image_weight=50)
    total = steps[-1][1]
    assert total >= out.details["denoise_steps"] >= 1
    assert steps == [(s, total) for s in range(1, total + 1)]
    seen: list[int] = []

    def cancel_at_two(step: int, total: int) -> None:
        seen.append(step)
        if step == 2:
            raise JobCancelled("cancelled")

    with pytest.raises(JobCancelled):
        remix(engine, on_step=cancel_at_two, rendering_speed="QUALITY")
    assert seen == [1, 2]
    denoiser = getattr(engine.pipe, "unet", None) or engine.pipe.transformer
    assert "forward" not in denoiser.__dict__  # per-job wrappers are gone
    assert remix(engine).image is not None  # and the engine still works


def test_style_and_palette_reach_the_conditioning_prompt_and_the_output(
        engine: DiffusersEngine) -> None:
    plain = remix(engine)
    for kw in ({"style_type": "DESIGN"}, {"style_codes": ["A1B2C3D4"]},
               {"color_palette": {"name": "ULTRAMARINE"}}):
        styled = remix(engine, **kw)
        assert styled.details["conditioning_prompt"] != plain.details["conditioning_prompt"], kw
        assert np.abs(pixels(styled) - pixels(plain)).mean() > 0.002, kw


def test_previews_show_each_job_of_a_batch_on_the_latent_grid_and_change_nothing(
        engine: DiffusersEngine) -> None:
    seen: list[tuple[int, int, dict[int, np.ndarray]]] = []

    class EveryOtherStep:
        def due(self, step: int, total: int) -> bool:
            return step % 2 == 0 and step < total

        def __call__(self, step: int, total: int, images: Any) -> None:
            seen.append((step, total, {i: np.asarray(im) for i, im in images.items()}))

    jobs = [item(seed=1, rendering_speed="QUALITY"),
            item(seed=2, rendering_speed="QUALITY", image=photo("coffee"))]
    outputs = engine.remix(jobs, no_op, on_preview=EveryOtherStep())
    alone = engine.remix([jobs[0]], no_op)[0]
    assert outputs[0].image is not None and alone.image is not None
    assert outputs[0].image.tobytes() == alone.image.tobytes()  # previews change nothing
    assert seen and all(step % 2 == 0 and step < total for step, total, _ in seen)
    gw, gh = outputs[0].details["generation_size"]
    for _, _, images in seen:
        assert sorted(images) == [0, 1]
        for preview in images.values():
            ph, pw = preview.shape[:2]
            assert gw % pw == 0 and gw // pw == gh // ph >= 2  # one pixel per latent cell
            assert preview.std() > 0  # a picture, not a blank
        assert not np.array_equal(images[0], images[1])  # each job its own
