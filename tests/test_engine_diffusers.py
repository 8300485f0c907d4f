"""DiffusersEngine on tiny random-weight SD and SDXL pipelines built and saved at test time.

The pipelines load through `AutoPipelineForImage2Image` from a local folder like a real model;
their images are noise-like, so the checks are about plumbing, determinism and direction.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from openremix.config import Settings  # noqa: E402
from openremix.engine.base import EngineError  # noqa: E402
from openremix.engine.diffusion import engine as de  # noqa: E402
from openremix.engine.palette import mean_color  # noqa: E402
from openremix.engine.registry import load_engine  # noqa: E402
from openremix.media.images import center_crop_resize  # noqa: E402
from openremix.server.wiring import diffusers_options  # noqa: E402
from tests.support.engine_inputs import item, no_op, photo, pixels, remix  # noqa: E402
from tests.support.tiny_pipelines import build_tiny_ip_adapter, build_tiny_pipeline  # noqa: E402

SIDE = 64
TINY = {"max_side": SIDE, "threads": 1}
"""Tiny models: generate at 64 px; one CPU thread (two threads on a busy 2-core runner spin)."""


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-diffusers")
    return {kind: build_tiny_pipeline(root / kind, kind, seed=0) for kind in ("sd", "sdxl")}


@pytest.fixture(scope="module")
def engines(tiny_models: dict[str, Path]) -> Iterator[dict[str, de.DiffusersEngine]]:
    threads = torch.get_num_threads()
    built = {}
    for kind, folder in tiny_models.items():
        engine = de.DiffusersEngine(model=str(folder), **TINY)
        engine.load()
        built[kind] = engine
    yield built
    torch.set_num_threads(threads)  # `threads=1` is process-wide: give other modules theirs


@pytest.fixture(params=["sd", "sdxl"])
def engine(request: pytest.FixtureRequest,
           engines: dict[str, de.DiffusersEngine]) -> de.DiffusersEngine:
    return engines[request.param]


@pytest.fixture
def sd(engines: dict[str, de.DiffusersEngine]) -> de.DiffusersEngine:
    return engines["sd"]


def test_a_local_folder_loads_through_the_auto_pipeline(
        engines: dict[str, de.DiffusersEngine]) -> None:
    assert type(engines["sd"].pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert type(engines["sdxl"].pipe).__name__ == "StableDiffusionXLImg2ImgPipeline"
    assert engines["sd"].traits is not None and engines["sd"].traits.family.name == "sd"
    assert engines["sdxl"].traits is not None and engines["sdxl"].traits.family.name == "sdxl"
    pipe = engines["sd"].pipe
    engines["sd"].load()
    assert engines["sd"].pipe is pipe and engines["sd"].device.type == "cpu"


def test_jobs_with_different_negative_prompts_share_one_batch(engine: de.DiffusersEngine) -> None:
    jobs = [item(prompt="a cat", seed=1),
            item(prompt="a red dog in the city", seed=2, negative_prompt="blurry",
                 image=photo("chelsea")),
            item(prompt="watercolor forest", seed=3, negative_prompt="dark", image=photo("coffee"))]
    assert len({engine.batch_key(job.params) for job in jobs}) == 1
    steps: list[tuple[int, int]] = []
    batch = engine.remix(jobs, lambda s, t: steps.append((s, t)))
    total = steps[-1][1]
    assert steps == [(s, total) for s in range(1, total + 1)]  # one pipeline call
    for job, out in zip(jobs, batch, strict=True):
        alone = engine.remix([job], no_op)[0]
        assert out.image is not None and alone.image is not None
        assert out.image.tobytes() == alone.image.tobytes()


def test_jobs_with_different_keys_in_one_call_run_as_separate_groups(
        sd: de.DiffusersEngine) -> None:
    jobs = [item(seed=1, rendering_speed="TURBO"), item(seed=2, rendering_speed="DEFAULT"),
            item(seed=3, rendering_speed="TURBO")]
    steps: list[tuple[int, int]] = []
    outs = sd.remix(jobs, lambda s, t: steps.append((s, t)))
    assert [s for s, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[-1] == (len(steps), len(steps))
    for job, out in zip(jobs, outs, strict=True):
        alone = sd.remix([job], no_op)[0]
        assert out.image is not None and alone.image is not None
        assert out.image.tobytes() == alone.image.tobytes()


def _vae_round_trip(engine: de.DiffusersEngine, image: Image.Image, size: tuple[int, int],
                    out_size: tuple[int, int]) -> np.ndarray:
    """The input as the model sees it: the tiny random VAE does not reproduce pixels."""
    pipe = engine.pipe
    x = pipe.image_processor.preprocess(center_crop_resize(image, size))
    with torch.inference_mode():
        latents = pipe.vae.encode(x).latent_dist.mean
        decoded = pipe.vae.decode(latents).sample
    rec = pipe.image_processor.postprocess(decoded, output_type="pil")[0]
    return np.asarray(rec.resize(out_size, Image.Resampling.LANCZOS), dtype=np.float32) / 255.0


def test_a_higher_image_weight_keeps_more_of_the_input(engine: de.DiffusersEngine) -> None:
    outs = {w: remix(engine, image_weight=w, resolution="1024x1024") for w in (1, 50, 100)}
    size = tuple(outs[1].details["generation_size"])
    seen = _vae_round_trip(engine, photo(), size, (1024, 1024))
    dist = {w: float(np.abs(pixels(o) - seen).mean()) for w, o in outs.items()}
    assert dist[1] > dist[50] > dist[100]
    assert outs[1].details["strength"] > outs[50].details["strength"] > outs[100].details[
        "strength"]


def test_a_palette_moves_the_output_colours_toward_it(sd: de.DiffusersEngine) -> None:
    from openremix.contract.palettes import palette_colors
    from openremix.contract.request import ColorPalette

    plain = remix(sd)
    tinted = remix(sd, color_palette={"name": "ULTRAMARINE"})
    target = mean_color(palette_colors(ColorPalette(name="ULTRAMARINE")))
    before = np.linalg.norm(pixels(plain).mean((0, 1)) - target)
    after = np.linalg.norm(pixels(tinted).mean((0, 1)) - target)
    assert after < before - 0.05
    assert "color palette of" in tinted.details["conditioning_prompt"]
    assert tinted.details["color_palette"][0]["color_hex"] == "#120a8f"


def test_a_negative_prompt_changes_the_output(sd: de.DiffusersEngine) -> None:
    a, b = remix(sd), remix(sd, negative_prompt="blurry dark noisy")
    assert np.abs(pixels(a) - pixels(b)).mean() > 0.002
    assert b.details["negative_prompt"] == "blurry dark noisy"


def test_style_codes_are_reproducible_and_reported(sd: de.DiffusersEngine) -> None:
    a = remix(sd, style_codes=["A1B2C3D4"])
    b = remix(sd, style_codes=["A1B2C3D4"])
    c = remix(sd, style_codes=["0000F00E"])
    assert a.image is not None and b.image is not None
    assert a.image.tobytes() == b.image.tobytes()
    assert np.abs(pixels(a) - pixels(c)).mean() > 0.005
    assert [s["code"] for s in a.details["styles"]] == ["A1B2C3D4"]
    assert a.details["styles"] == b.details["styles"] != c.details["styles"]


def test_style_references_without_an_ip_adapter_transfer_colours_and_warn(
        sd: de.DiffusersEngine) -> None:
    red = Image.new("RGB", (64, 64), (200, 30, 30))
    plain = remix(sd)
    styled = remix(sd, refs=[red], style_reference_images=["https://x/red.png"])
    assert styled.warnings == [de.REFERENCE_WARNING]
    assert styled.details["style_reference"] == "color-statistics"
    red_share = lambda out: pixels(out)[..., 0].mean() - pixels(out)[..., 1:].mean()  # noqa: E731
    assert red_share(styled) > red_share(plain) + 0.1


def test_style_references_with_an_ip_adapter_condition_the_model(
        tiny_models: dict[str, Path], tmp_path: Path) -> None:
    weights = build_tiny_ip_adapter(tmp_path / "ip", tiny_models["sd"])
    engine = de.DiffusersEngine(model=str(tiny_models["sd"]), ip_adapter=str(weights),
                                **TINY)
    plain = remix(engine)
    refs = [photo("coffee")]
    jobs = [item(refs=refs, style_reference_images=["u"], seed=s) for s in (1, 2)]
    batch = engine.remix(jobs, no_op)
    assert batch[0].warnings == [] and batch[0].details["style_reference"] == "ip-adapter"
    alone = [engine.remix([job], no_op)[0] for job in jobs]
    assert [o.image.tobytes() for o in batch] == [o.image.tobytes() for o in alone]  # type: ignore[union-attr]
    with_ref = remix(engine, refs=refs, style_reference_images=["u"])
    assert np.abs(pixels(with_ref) - pixels(plain)).mean() > 0.002


def test_a_blocked_prompt_gives_no_image(sd: de.DiffusersEngine) -> None:
    out = remix(sd, prompt="a photo of a beheading")
    assert out.image is None and not out.is_image_safe
    assert out.error is not None and "content filter" in out.error


def test_an_output_flagged_by_the_safety_checker_gives_no_image(
        sd: de.DiffusersEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    class Features:
        pixel_values = torch.zeros(1, 3, 8, 8)

        def to(self, *args: Any) -> Features:
            return self

    monkeypatch.setattr(sd.pipe, "feature_extractor", lambda images, return_tensors: Features())
    monkeypatch.setattr(sd.pipe, "safety_checker",
                        lambda images, clip_input: (images, [True] * len(images)))
    out = remix(sd)
    assert out.image is None and not out.is_image_safe and "safety checker" in (out.error or "")


def test_magic_prompt_is_used_and_returned(sd: de.DiffusersEngine) -> None:
    out = remix(sd, prompt="cat", magic_prompt="ON")
    assert out.prompt.startswith("cat, ") and out.details["conditioning_prompt"] == out.prompt


def test_true_batching_is_close_to_solo_runs(tiny_models: dict[str, Path]) -> None:
    engine = de.DiffusersEngine(model=str(tiny_models["sd"]), exact_batches=False, **TINY)
    jobs = [item(seed=1), item(seed=2, prompt="a dog")]
    batch = engine.remix(jobs, no_op)
    for job, out in zip(jobs, batch, strict=True):
        assert np.abs(pixels(out) - pixels(engine.remix([job], no_op)[0])).max() <= 2 / 255


def test_the_registry_builds_it_from_the_settings_and_explains_missing_packages(
        monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> None:
    monkeypatch.setenv("OPENREMIX_MODEL", str(tiny_models["sd"]))
    engine = load_engine("diffusers", diffusers_options(Settings()))
    assert isinstance(engine, de.DiffusersEngine) and engine.model == str(tiny_models["sd"])
    assert engine.pipe is None  # built, not loaded
    monkeypatch.setitem(sys.modules, "openremix.engine.diffusion.engine", None)
    with pytest.raises(EngineError, match=r"pip install openremix\[diffusers\]"):
        load_engine("diffusers")


def test_the_engine_takes_its_configuration_only_as_arguments(
        monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> None:
    """`Settings` is the one reader of the environment: the engine ignores OPENREMIX_*."""
    monkeypatch.setenv("OPENREMIX_MODEL", str(tiny_models["sdxl"]))
    monkeypatch.setenv("OPENREMIX_DEVICE", "cuda:7")
    monkeypatch.setenv("OPENREMIX_DTYPE", "float16")
    monkeypatch.setenv("OPENREMIX_IP_ADAPTER", "/nowhere/ip-adapter.safetensors")
    engine = de.DiffusersEngine(model=str(tiny_models["sd"]), **TINY)
    engine.load()
    assert engine.model == str(tiny_models["sd"]) and engine.ip_adapter is None
    assert engine.device.type == "cpu" and engine.dtype == torch.float32
    assert type(engine.pipe).__name__ == "StableDiffusionImg2ImgPipeline"
    assert remix(engine).image is not None


def test_an_empty_model_is_an_error_that_says_what_to_set(
        monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> None:
    monkeypatch.setenv("OPENREMIX_MODEL", str(tiny_models["sd"]))  # not read by the engine
    for options in ({"model": ""}, {"model": "  "}, None):
        with pytest.raises(EngineError, match=r"OPENREMIX_MODEL.*stabilityai/sdxl-turbo"):
            load_engine("diffusers", options)
    with pytest.raises(EngineError, match="OPENREMIX_MODEL"):
        de.DiffusersEngine(model="")


def test_a_folder_that_is_not_a_model_fails_with_a_sentence(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot load the diffusers model"):
        de.DiffusersEngine(model=str(tmp_path)).load()


def test_a_cuda_card_gets_bf16_where_it_has_it_and_fp16_otherwise(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU here: torch's answers about the card are stood in for."""
    from openremix.engine.diffusion.loading import pick_device, pick_dtype

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    cuda = pick_device(None)
    assert cuda == pick_device("auto") == torch.device("cuda")
    assert pick_dtype(None, cuda) == pick_dtype("auto", cuda) == torch.bfloat16
    assert pick_dtype("float32", cuda) == torch.float32  # an explicit dtype wins
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert pick_dtype(None, cuda) == torch.float16
    assert pick_dtype(None, torch.device("cpu")) == torch.float32


def test_the_cpu_offload_setting_offloads_the_model_instead_of_moving_it(
        monkeypatch: pytest.MonkeyPatch, tiny_models: dict[str, Path]) -> None:
    """OPENREMIX_CPU_OFFLOAD=1 on a CUDA device: `enable_model_cpu_offload(device)` instead of
    `pipe.to(cuda)` (which would fail here, with no GPU). The offload call is stood in for."""
    from diffusers import DiffusionPipeline

    offloaded: list[Any] = []
    monkeypatch.setattr(DiffusionPipeline, "enable_model_cpu_offload",
                        lambda pipe, device=None, **_: offloaded.append((pipe, device)))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    for flag in ("benchmark", "deterministic"):  # load_pipeline sets them for CUDA: restore
        monkeypatch.setattr(torch.backends.cudnn, flag, getattr(torch.backends.cudnn, flag))
    monkeypatch.setenv("OPENREMIX_MODEL", str(tiny_models["sd"]))
    monkeypatch.setenv("OPENREMIX_DEVICE", "cuda")
    monkeypatch.setenv("OPENREMIX_CPU_OFFLOAD", "1")
    engine = load_engine("diffusers", diffusers_options(Settings()))
    assert isinstance(engine, de.DiffusersEngine) and engine.cpu_offload
    engine.load()
    assert offloaded == [(engine.pipe, torch.device("cuda"))]
    assert engine.dtype == torch.bfloat16 and engine.pipe.unet.dtype == torch.bfloat16
    assert engine.pipe.unet.device.type == "cpu"  # left where offloading moves it from
    monkeypatch.setenv("OPENREMIX_CPU_OFFLOAD", "0")
    assert load_engine("diffusers", diffusers_options(Settings())).cpu_offload is False


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_half_precision_runs_and_batches_exactly(tiny_models: dict[str, Path]) -> None:
    engine = de.DiffusersEngine(model=str(tiny_models["sdxl"]), device="cuda", dtype="float16",
                                max_side=SIDE)
    engine.load()
    assert engine.pipe.unet.dtype == torch.float16 and engine.device.type == "cuda"
    jobs = [item(seed=1), item(seed=2, prompt="a dog")]
    batch = engine.remix(jobs, no_op)
    for job, out in zip(jobs, batch, strict=True):
        alone = engine.remix([job], no_op)[0]
        assert out.image is not None and alone.image is not None
        assert out.image.size == (1024, 1024) and out.image.tobytes() == alone.image.tobytes()
