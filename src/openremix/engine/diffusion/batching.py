"""Running several jobs in one pipeline call: progress across the call's groups, and byte-exact
rows per job.

Byte-exact batches: CPU and GPU kernels round differently for different batch sizes, so a job
batched with others would drift in the last bits from the same job alone. While `rows_per_job`
is active, the text encoders, the denoiser and the VAE decoder run each job's rows as a call of
their own (the shapes of a solo run); the rest of the pipeline call (scheduler, latents, image
processing) stays shared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch

from openremix.engine.base import PreviewCallback, StepCallback
from openremix.engine.diffusion.latent_preview import Renderer

log = logging.getLogger(__name__)


class BatchProgress:
    """Turns each group's `callback_on_step_end` into `on_step(step, total)` for the batch, and
    its latents into live previews (`on_preview`) when one is due."""

    def __init__(self, on_step: StepCallback, planned: list[int],
                 on_preview: PreviewCallback | None = None) -> None:
        """`planned`: each group's denoising steps as the mapping predicts them, in run order."""
        self.on_step, self.planned, self.on_preview = on_step, planned, on_preview
        self.group, self.done = 0, 0
        self.current: int | None = None
        """Denoising steps of the running group, as the pipeline counts them."""
        self.indices: list[int] = []
        """The running group's jobs: their input indices, in row order."""
        self.render: Renderer | None = None

    def watch(self, indices: list[int], render: Renderer | None) -> None:
        """The next group's jobs (input indices, in row order) and how to picture its latents
        (None: no previews for this group)."""
        self.indices, self.render = indices, render

    def callback(self, pipe: Any, step: int, timestep: Any,
                 kwargs: dict[str, Any]) -> dict[str, Any]:
        """Called by diffusers after each denoising step; `JobCancelled` propagates."""
        self.step(step, int(getattr(pipe, "num_timesteps", 0) or self.planned[self.group]),
                  kwargs.get("latents"))
        return kwargs

    def step(self, step: int, steps: int, latents: torch.Tensor | None = None) -> None:
        """The running group finished its step `step` (from 0) of `steps`; `latents`: the
        group's latents after it, where the caller has them (for previews)."""
        self.current = steps
        total = self.done + steps + sum(self.planned[self.group + 1:])
        reported = self.done + step + 1
        self.on_step(reported, total)
        if latents is not None:
            self._preview(reported, total, latents)

    def _preview(self, step: int, total: int, latents: torch.Tensor) -> None:
        if self.on_preview is None or self.render is None or not self.on_preview.due(step,
                                                                                    total):
            return
        try:
            images = self.render(latents)
        except Exception:  # a preview must never fail a job: stop trying for this group
            log.warning("live previews failed; none more for this group", exc_info=True)
            self.render = None
            return
        if images:
            self.on_preview(step, total, dict(zip(self.indices, images, strict=False)))

    def next_group(self) -> None:
        """The group finished: its actual step count joins the done count."""
        self.done += self.planned[self.group] if self.current is None else self.current
        self.group += 1
        self.current = None
        self.indices, self.render = [], None


_PER_JOB_MODULES = ("text_encoder", "text_encoder_2", "text_encoder_3", "unet", "transformer",
                    "unconditional_transformer")


@contextmanager
def rows_per_job(pipe: Any, jobs: int) -> Iterator[None]:
    """While active, the pipeline's models run each job's rows as a call of their own."""
    targets = [(getattr(pipe, n, None), "forward") for n in _PER_JOB_MODULES]
    targets.append((getattr(pipe, "vae", None), "decode"))
    patched = []
    if jobs > 1:
        for module, attr in targets:
            if module is None:
                continue
            saved = module.__dict__.get(attr)
            setattr(module, attr, _split_by_job(getattr(module, attr), jobs))
            patched.append((module, attr, saved))
    try:
        yield
    finally:
        for module, attr, saved in patched:
            if saved is None:
                delattr(module, attr)
            else:
                setattr(module, attr, saved)


def _split_by_job(fn: Callable[..., Any], jobs: int) -> Callable[..., Any]:
    """`fn` run once per job on rows `i, i + jobs, ...` (diffusers stacks CFG halves), merged."""
    def call(*args: Any, **kwargs: Any) -> Any:
        rows = _first_rows(args, kwargs)
        if rows is None or rows % jobs or rows == 1:
            return fn(*args, **kwargs)
        groups = [[i + k * jobs for k in range(rows // jobs)] for i in range(jobs)]
        outs = [fn(*_take(args, idx, rows), **_take(kwargs, idx, rows)) for idx in groups]
        order = torch.tensor([r for g in groups for r in g])
        return _merge(outs, torch.argsort(order), rows)

    return call


def _first_rows(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The batch size of a call: the first dimension of its first non-scalar tensor."""
    tensors = (v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor) and v.dim())
    return next((int(t.shape[0]) for t in tensors), None)


def _take(value: Any, idx: list[int], rows: int) -> Any:
    """Rows `idx` of every tensor in `value` that has `rows` rows (through dicts, lists)."""
    if isinstance(value, torch.Tensor):
        return value[idx] if value.dim() > 0 and value.shape[0] == rows else value
    if isinstance(value, dict):
        return {k: _take(v, idx, rows) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_take(v, idx, rows) for v in value)
    return value


def _merge(outs: list[Any], inverse: torch.Tensor, rows: int) -> Any:
    """The per-job outputs put back together in the original row order."""
    first = outs[0]
    if isinstance(first, torch.Tensor):
        if first.dim() == 0 or sum(o.shape[0] for o in outs) != rows:
            return first
        return torch.cat(outs)[inverse]
    if isinstance(first, dict):  # diffusers' and transformers' ModelOutput are dicts
        merged = {k: _merge([o[k] for o in outs], inverse, rows) for k in first}
        return type(first)(**merged)
    if isinstance(first, (list, tuple)):
        return type(first)(_merge(list(items), inverse, rows) for items in zip(*outs, strict=True))
    return first
