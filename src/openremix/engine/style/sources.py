"""Where the style library's vectors come from, and the script that rebuilds them.

Every library style is a 100-d vector for the arbitrary transform network. They are computed
once, offline, and shipped in `data/style_vectors.json`; the engine only reads that file.

- `builtin:N`: the look of built-in style N of multistyle26, read back as a style vector from
  its renderings on three photos at two sizes (averaged).
- `pattern:NAME`: photos redrawn procedurally (halftone, stripes, neon edges, pixels...).
- `grade:NAME`: photos colour-graded in pixel space (golden hour, noir...): tone, little texture.

Rebuild (needs scikit-image for the photos): `python -m openremix.engine.style.sources`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from openremix.engine.palette import hex_to_rgb

DATA_DIR = Path(__file__).parent / "data"

Pattern = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""(photo HxWx3 0..1, rng) -> the photo redrawn in a style."""


def _colors(*hexes: str) -> np.ndarray:
    return np.array([hex_to_rgb(h) for h in hexes], dtype=np.float32) / 255.0


def _luma(photo: np.ndarray) -> np.ndarray:
    return photo @ np.array([0.299, 0.587, 0.114], np.float32)


def _blur(a: np.ndarray, radius: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter  # build time only (scikit-image brings scipy)

    sigma = (radius, radius, 0) if a.ndim == 3 else radius
    return gaussian_filter(a.astype(np.float32), sigma)


def _edges(photo: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(_blur(_luma(photo), 1.0))
    e = np.hypot(gx, gy)
    return np.clip(e / (np.percentile(e, 97) + 1e-6), 0, 1)


def _nearest(photo: np.ndarray, pal: np.ndarray) -> np.ndarray:
    return pal[np.argmin(((photo[..., None, :] - pal) ** 2).sum(-1), -1)]


def _grid(photo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = photo.shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    return x / w, y / h


def halftone(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    out = np.ones_like(photo)
    for angle, c in [(0.26, 0), (1.3, 1), (0.79, 2)]:
        u, v = x * np.cos(angle) + y * np.sin(angle), -x * np.sin(angle) + y * np.cos(angle)
        d = np.hypot((u * 40) % 1 - 0.5, (v * 40) % 1 - 0.5)
        out[..., c] = np.where(d < 0.62 * np.sqrt(1 - photo[..., c]), 0.1, 1.0)
    return out


def stripes(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    pal = _colors("#e63946", "#f1faee", "#1d3557", "#ffb703")
    level = np.clip(_luma(photo) * 4, 0, 3.99).astype(int)
    alt = pal[(level + 2) % 4] * 0.3 + 0.7 * pal[level]
    return np.where(((x + y) * 24 % 1 < 0.5)[..., None], pal[level], alt)


def watercolour(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    soft = 1 - (1 - _blur(photo, 3.0)) * 0.8  # lighter, like pigment on paper
    bleed = _blur(rng.random(photo.shape[:2]).astype(np.float32), 6)[..., None]
    return np.clip(soft * (0.9 + 0.2 * bleed) - 0.25 * _edges(soft)[..., None], 0, 1)


def flat_poster(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pal = _colors("#264653", "#2a9d8f", "#e9c46a", "#f4a261", "#e76f51", "#fdf0d5")
    return _nearest(_blur(photo, 2.0), pal)


def neon(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    e = _edges(photo)
    hue = (x + 0.5 * y) % 1
    glow = np.stack([0.5 + 0.5 * np.cos(6.28 * (hue + o)) for o in (0, 0.4, 0.7)], -1)
    return np.clip(0.04 + glow * np.clip(e + _blur(e, 3) * 1.5, 0, 1)[..., None], 0, 1)


def blueprint(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    grid = (((x * 24) % 1 < 0.05) | ((y * 24) % 1 < 0.05)).astype(np.float32) * 0.3
    ink = np.clip(_edges(photo) * 1.5 + grid, 0, 1)[..., None]
    return _colors("#0b3d91")[0] * (1 - ink) + _colors("#e8f1ff")[0] * ink


def cross_hatch(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    tone = _luma(photo)
    ink = np.zeros(tone.shape, bool)
    for k, (a, b) in enumerate([(1, 1), (1, -1), (1, 0), (0, 1)]):
        ink |= (((a * x + b * y) * 70) % 1 < 0.35) & (tone < 0.75 - 0.18 * k)
    return _colors("#f5efe0")[0] * (1 - 0.85 * ink[..., None])


def pixel_mosaic(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    pal = _colors("#222034", "#45283c", "#d95763", "#df7126", "#fbf236", "#6abe30", "#5b6ee1",
                  "#cbdbfc", "#8f563b", "#306082")
    h, w = photo.shape[:2]
    small = Image.fromarray((photo * 255).astype(np.uint8)).resize((w // 8, h // 8))
    blocks = _nearest(np.asarray(small, np.float32) / 255, pal)
    return np.kron(blocks, np.ones((8, 8, 1), np.float32))[:h, :w]


def psychedelic(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x, y = _grid(photo)
    hue = (_luma(photo) * 2 + np.sin(x * 18 + 4 * np.sin(y * 12)) * 0.5 + 0.5) % 1
    return np.stack([0.5 + 0.5 * np.cos(6.28 * (hue + o)) for o in (0, 0.33, 0.67)], -1)


def charcoal(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    tone = np.clip((_luma(photo) - 0.5) * 1.4 + 0.6, 0, 1)
    streak = _blur(rng.random(tone.shape).astype(np.float32), 1.5)
    dark = np.clip(1 - tone + 0.6 * _edges(photo), 0, 1) * (0.7 + 0.6 * streak)
    return np.repeat((0.95 - 0.8 * np.clip(dark, 0, 1))[..., None], 3, -1)


def risograph(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    pink, blue, paper = _colors("#ff48b0", "#0078bf", "#f7f3e8")
    grain = rng.random(photo.shape[:2]).astype(np.float32)
    out = np.where((photo[..., 1] < grain * 0.9 + 0.05)[..., None], paper * pink, paper)
    return np.where((_luma(photo) < grain * 0.7)[..., None], out * blue, out)


PATTERNS: dict[str, Pattern] = {
    "halftone": halftone, "stripes": stripes, "watercolour": watercolour,
    "flat_poster": flat_poster, "neon": neon, "blueprint": blueprint,
    "cross_hatch": cross_hatch, "pixel_mosaic": pixel_mosaic, "psychedelic": psychedelic,
    "charcoal": charcoal, "risograph": risograph,
}

# Pixel-space grades for `grade:NAME`: (matrix on RGB, offset, gamma, saturation, grain)
GRADES: dict[str, tuple[tuple[float, ...], tuple[float, float, float], float, float, float]] = {
    "golden_hour": ((1.15, 0.05, 0, 0, 1.0, 0, 0, 0, 0.75), (0.06, 0.02, -0.03), 0.9, 1.15, 0.0),
    "teal_orange": ((1.1, 0.1, 0, 0, 0.95, 0.1, 0, 0.2, 0.9), (0.0, 0.03, 0.06), 1.0, 1.1, 0.0),
    "noir": ((0.3, 0.59, 0.11) * 3, (-0.05, -0.05, -0.05), 1.4, 1.0, 0.03),
    "faded_film": ((0.85, 0.1, 0.05, 0.05, 0.85, 0.05, 0, 0.1, 0.75), (0.1, 0.08, 0.06), 0.85,
                   0.8, 0.04),
    "moonlit": ((0.6, 0.1, 0, 0, 0.75, 0.1, 0, 0.2, 1.0), (0.0, 0.03, 0.12), 1.25, 0.8, 0.0),
    "sepia_photo": ((0.39, 0.77, 0.19, 0.35, 0.69, 0.17, 0.27, 0.53, 0.13), (0.02, 0.0, -0.02),
                    1.05, 1.0, 0.05),
    "pastel_matte": ((0.8, 0.1, 0.1, 0.1, 0.8, 0.1, 0.1, 0.1, 0.8), (0.15, 0.14, 0.16), 0.8,
                     0.85, 0.0),
    "vivid_pop": ((1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0), (0.0, 0.0, 0.0), 1.1, 1.6, 0.0),
}


def grade(photo: np.ndarray, name: str, rng: np.random.Generator) -> np.ndarray:
    """Apply the named pixel-space grade to a photo (HxWx3, 0..1)."""
    matrix, offset, gamma, sat, grain = GRADES[name]
    out = photo @ np.array(matrix, np.float32).reshape(3, 3).T + np.array(offset, np.float32)
    out = np.clip(out, 0, 1) ** gamma
    grey = out.mean(-1, keepdims=True)
    out = grey + (out - grey) * sat
    out += (rng.random(out.shape[:2])[..., None] - 0.5) * grain
    return np.clip(out, 0, 1).astype(np.float32)


def _photos() -> list[np.ndarray]:
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.coffee(), data.chelsea()]
    return [np.asarray(Image.fromarray(p).resize((384, 384)), np.float32) / 255 for p in photos]


def build_vectors(labels: list[dict], threads: int | None = None) -> dict[str, list[float]]:
    """Compute every labelled style's vector (see the module docstring for the sources)."""
    from PIL import Image

    from openremix.engine.style.networks import StyleNetworks

    nets = StyleNetworks(threads=threads)
    photos = _photos()
    vectors: dict[str, list[float]] = {}
    for entry in labels:
        kind, _, arg = entry["source"].partition(":")
        rng = np.random.default_rng(sum(map(ord, entry["name"])))
        if kind == "builtin":
            weights = np.eye(26, dtype=np.float32)[int(arg)]
            renders = [nets.multistyle(p, weights) for p in photos]
            renders += [
                nets.multistyle(np.asarray(Image.fromarray((p * 255).astype(np.uint8)).resize(
                    (256, 256)), np.float32) / 255, weights) for p in photos]
            vec = np.mean([nets.predict(r) for r in renders], axis=0)
        elif kind == "pattern":
            vec = np.mean([nets.predict(PATTERNS[arg](p, rng)) for p in photos], axis=0)
        elif kind == "grade":
            vec = np.mean([nets.predict(grade(p, arg, rng)) for p in photos], axis=0)
        else:
            raise ValueError(f"unknown style source {entry['source']!r}")
        vectors[entry["name"]] = [round(float(v), 5) for v in vec]
    return vectors


def main() -> None:
    """Rebuild `data/style_vectors.json` from `data/style_labels.json`."""
    labels = json.loads((DATA_DIR / "style_labels.json").read_text())["styles"]
    vectors = build_vectors(labels)
    out = DATA_DIR / "style_vectors.json"
    out.write_text(json.dumps({"version": 1, "vectors": vectors}, separators=(",", ":")) + "\n")
    print(f"wrote {len(vectors)} style vectors to {out}")


if __name__ == "__main__":
    main()
