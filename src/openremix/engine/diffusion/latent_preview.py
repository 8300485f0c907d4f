"""Cheap live previews of a diffusion run: latents -> RGB by a linear projection.

Decoding latents with the VAE every few steps would cost as much as the final decode each
time. A latent's channels are close to a linear function of the colour of the pixels it covers,
so one matrix product per preview gives a low-resolution picture of the work in progress (one
pixel per latent cell), as ComfyUI's latent previews do with per-family factors.

We do not ship factors: they differ per VAE, and a fine-tuned or random VAE (the tests' tiny
models) has its own. Each model's projection is *fitted once*, on first use, on its own VAE:
a few synthetic colour images (blocks of random colours, gradients) are encoded into exactly
the latent space the denoising loop works in, and least squares maps each latent cell to the
mean colour of the pixels under it. The family says how its latents lay out (a `(B, C, h, w)`
grid, or packed tokens) and how it encodes (`fit_samples`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

SAMPLE_SIDE = 256
"""Side of the synthetic images the projection is fitted on (a multiple of every VAE's cell)."""
RIDGE = 1e-3
"""A little ridge regularisation: packed latents have more channels than a colour needs."""


def sample_images(side: int = SAMPLE_SIDE, seed: int = 0) -> list[Image.Image]:
    """Synthetic fitting images: random colour blocks of two sizes and a colour gradient."""
    rng = np.random.default_rng(seed)
    images = []
    for cells in (8, 16):
        colours = rng.uniform(0.0, 1.0, (cells, cells, 3))
        block = np.kron(colours, np.ones((side // cells, side // cells, 1)))
        images.append(block)
    y, x = np.mgrid[0:side, 0:side] / (side - 1)
    images.append(np.stack([x, y, 1.0 - (x + y) / 2], axis=-1))
    return [Image.fromarray((img * 255 + 0.5).astype(np.uint8)) for img in images]


@dataclass(frozen=True)
class LatentProjection:
    """RGB (-1..1) = latents (channels last) @ `weight` + `bias`."""

    weight: torch.Tensor
    """(channels, 3)"""
    bias: torch.Tensor
    """(3,)"""

    def images(self, grid: torch.Tensor) -> list[Image.Image]:
        """`(B, C, h, w)` latents -> B RGB images of h x w pixels."""
        cells = grid.detach().float().cpu().permute(0, 2, 3, 1)
        rgb = (cells @ self.weight + self.bias).clamp(-1.0, 1.0)
        pixels = ((rgb + 1.0) * 127.5 + 0.5).to(torch.uint8).numpy()
        return [Image.fromarray(np.ascontiguousarray(p)) for p in pixels]


def fit_projection(latents: torch.Tensor, pixels: torch.Tensor) -> LatentProjection:
    """Least squares from `(N, C, h, w)` latents to the mean colour of `(N, 3, H, W)` pixels
    (-1..1) over each latent cell."""
    latents = latents.detach().float().cpu()
    _, channels, h, w = latents.shape
    target = F.adaptive_avg_pool2d(pixels.detach().float().cpu(), (h, w))
    x = latents.permute(0, 2, 3, 1).reshape(-1, channels)
    x = torch.cat([x, torch.ones(len(x), 1)], dim=1).double()
    y = target.permute(0, 2, 3, 1).reshape(-1, 3).double()
    gram = x.T @ x + RIDGE * len(x) * torch.eye(channels + 1, dtype=torch.float64)
    solution = torch.linalg.solve(gram, x.T @ y).float()
    return LatentProjection(weight=solution[:channels], bias=solution[channels])


def tokens_to_grid(tokens: torch.Tensor, grid_h: int, grid_w: int) -> torch.Tensor:
    """Packed latents `(B, grid_h * grid_w, C)` (row-major tokens) -> `(B, C, grid_h, grid_w)`."""
    batch, _, channels = tokens.shape
    return tokens.reshape(batch, grid_h, grid_w, channels).permute(0, 3, 1, 2)


Renderer = Callable[[torch.Tensor], list[Image.Image]]
"""A group's latents, as its denoising loop holds them after a step -> one image per job."""


def token_renderer(
    projection: ProjectionCache, size: tuple[int, int], multiple: int
) -> Renderer:
    """The `Renderer` of a family whose loop holds packed tokens (Ideogram 4, FLUX.1 Kontext):
    one pixel per token of a `size` (width, height) generation, `multiple` pixels a token."""
    width, height = size
    grid_h, grid_w = height // multiple, width // multiple

    def render(latents: torch.Tensor) -> list[Image.Image]:
        return projection.get().images(tokens_to_grid(latents, grid_h, grid_w))

    return render


class ProjectionCache:
    """One model's projection, fitted on first use (`fit` encodes `sample_images`)."""

    def __init__(self, fit: Callable[[list[Image.Image]], tuple[torch.Tensor, torch.Tensor]]):
        """`fit(images)` -> (latents `(N, C, h, w)`, pixels `(N, 3, H, W)` in -1..1)."""
        self._fit = fit
        self._projection: LatentProjection | None = None

    def get(self) -> LatentProjection:
        if self._projection is None:
            with torch.inference_mode():
                self._projection = fit_projection(*self._fit(sample_images()))
        return self._projection


def pixels_of(images: list[Image.Image]) -> torch.Tensor:
    """RGB images -> `(N, 3, H, W)` floats in -1..1 (the VAE's input range)."""
    arrays = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32) for im in images])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2) / 127.5 - 1.0
