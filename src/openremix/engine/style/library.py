"""The curated style library and style codes.

The library is data: `data/style_labels.json` (name, description, tags, families, source; the
26 built-in styles were labelled by looking at them rendered on photos) and
`data/style_vectors.json` (each style's 100-d vector, rebuilt by `style_sources`).

A style code is 8 hex digits packing a `StyleBlend` (up to three library styles, their weight
levels and a jitter variant), so any code decodes to a valid style and every style the engine
picks from a prompt has a code that reproduces it exactly:

    bits 31..26 style A | 25..20 style B | 19..14 style C | 13..11 weight A | 10..8 weight B
    | 7..5 weight C | 4..0 jitter (0: none)

Style indexes wrap modulo the library size, so codes are stable for one `LIBRARY_VERSION`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
JITTER_SCALE = 0.35
"""Jitter, in units of each vector dimension's spread across the library."""

FAMILIES_BY_STYLE_TYPE: dict[str, frozenset[str]] = {
    "REALISTIC": frozenset({"realistic"}),
    "DESIGN": frozenset({"design"}),
    "FICTION": frozenset({"painterly"}),
    "STYLIZED": frozenset({"painterly", "design"}),
    "GENERAL": frozenset({"realistic", "design", "painterly"}),
    "AUTO": frozenset({"realistic", "design", "painterly"}),
}
"""Which library families each `style_type` may draw from."""


@dataclass(frozen=True, eq=False)
class LibraryStyle:
    """One labelled style of the library."""

    index: int
    name: str
    description: str
    tags: tuple[str, ...]
    families: frozenset[str]
    source: str
    vector: np.ndarray


@dataclass(frozen=True, eq=False)
class StyleLibrary:
    """All library styles, in code order, with their vectors stacked."""

    version: int
    styles: tuple[LibraryStyle, ...]
    vectors: np.ndarray
    spread: np.ndarray
    """Per-dimension standard deviation of the library vectors (scales the jitter)."""

    def __len__(self) -> int:
        return len(self.styles)

    def by_name(self, name: str) -> LibraryStyle:
        """The style called `name` (KeyError if none)."""
        for style in self.styles:
            if style.name == name:
                return style
        raise KeyError(name)

    def eligible(self, style_type: str) -> np.ndarray:
        """Boolean mask of the styles a `style_type` may use."""
        families = FAMILIES_BY_STYLE_TYPE.get(style_type, FAMILIES_BY_STYLE_TYPE["GENERAL"])
        return np.array([bool(s.families & families) for s in self.styles])


@lru_cache(maxsize=1)
def load_library() -> StyleLibrary:
    """Read the packaged library (cached)."""
    labels = json.loads((DATA_DIR / "style_labels.json").read_text(encoding="utf-8"))
    vectors = json.loads((DATA_DIR / "style_vectors.json").read_text(encoding="utf-8"))
    styles = []
    for i, entry in enumerate(labels["styles"]):
        vec = np.array(vectors["vectors"][entry["name"]], dtype=np.float32)
        styles.append(LibraryStyle(
            index=i, name=entry["name"], description=entry["description"],
            tags=tuple(entry["tags"]), families=frozenset(entry["families"]),
            source=entry["source"], vector=vec))
    stacked = np.stack([s.vector for s in styles])
    return StyleLibrary(labels["version"], tuple(styles), stacked, stacked.std(axis=0) + 1e-6)


@dataclass(frozen=True)
class StyleBlend:
    """Up to three library styles with 3-bit weight levels, plus a jitter variant (0..31)."""

    indexes: tuple[int, int, int]
    levels: tuple[int, int, int]
    jitter: int = 0

    def weights(self) -> dict[int, float]:
        """Library index -> normalised weight (the first style always counts)."""
        raw: dict[int, float] = {}
        for k, (index, level) in enumerate(zip(self.indexes, self.levels, strict=True)):
            value = level + 2 if k == 0 else level
            if value:
                raw[index] = raw.get(index, 0.0) + float(value)
        total = sum(raw.values())
        return {i: w / total for i, w in raw.items()}

    def vector(self, library: StyleLibrary) -> np.ndarray:
        """The blend's style vector (weighted mean of its styles, plus its jitter)."""
        vec = np.zeros(library.vectors.shape[1], dtype=np.float32)
        for index, weight in self.weights().items():
            vec += weight * library.vectors[index]
        if self.jitter:
            noise = np.random.default_rng(self.jitter).standard_normal(vec.shape)
            vec += (JITTER_SCALE * library.spread * noise).astype(np.float32)
        return vec

    def to_code(self) -> str:
        """The 8-hex-digit code (uppercase) that decodes back to this blend."""
        a, b, c = (i & 63 for i in self.indexes)
        wa, wb, wc = (level & 7 for level in self.levels)
        value = a << 26 | b << 20 | c << 14 | wa << 11 | wb << 8 | wc << 5 | (self.jitter & 31)
        return f"{value:08X}"

    @classmethod
    def from_code(cls, code: str, library_size: int) -> StyleBlend:
        """Decode any 8-hex-digit code into a blend of this library."""
        value = int(code, 16)
        indexes = tuple((value >> shift & 63) % library_size for shift in (26, 20, 14))
        levels = tuple(value >> shift & 7 for shift in (11, 8, 5))
        return cls(indexes, levels, value & 31)  # type: ignore[arg-type]

    def describe(self, library: StyleLibrary) -> list[dict[str, float | str]]:
        """[{"name", "weight"}] for reports, heaviest first."""
        pairs = sorted(self.weights().items(), key=lambda kv: (-kv[1], kv[0]))
        return [{"name": library.styles[i].name, "weight": round(w, 3)} for i, w in pairs]
