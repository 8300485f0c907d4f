"""Prompt -> library style weights, by words: tokens, phrases, a few synonyms, family hints.

Deterministic and dependency-free. Each style's terms come from its labels: tags (a hyphenated
tag is a phrase, worth more), name words and description words. The negative prompt is scored
the same way and subtracted. `pick_blend` then draws a `StyleBlend` with a seeded Gumbel top-3:
a strong match always leads, the seed varies the supporting styles and the jitter.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

import numpy as np

from openremix.engine.style.library import StyleBlend, StyleLibrary

NEGATIVE_FACTOR = 1.5
ADDED_WORDS_WEIGHT = 0.3
TEMPERATURE = 0.6
_TAG_WORD, _TAG_PHRASE, _NAME_WORD, _DESCRIPTION_WORD = 1.5, 3.0, 1.0, 0.4

SYNONYMS: dict[str, str] = {
    "colour": "color", "colours": "color", "colors": "color", "colourful": "colorful",
    "grey": "gray", "watercolours": "watercolor", "watercolour": "watercolor",
    "photo": "photograph", "photos": "photograph", "photography": "photograph",
    "photographic": "photograph", "b&w": "black-and-white", "bw": "black-and-white",
    "monochromatic": "monochrome", "painted": "painting", "paint": "painting",
    "cartoonish": "cartoon", "comics": "comic", "sketched": "sketch", "sketches": "sketch",
    "drawn": "drawing", "psychedelia": "psychedelic", "pixelated": "pixel", "pixels": "pixel",
    "filmic": "film", "movie": "cinematic", "vintage": "vintage", "retro": "retro",
}
FAMILY_HINTS: dict[str, frozenset[str]] = {
    "realistic": frozenset({"photograph", "realistic", "photorealistic", "cinematic", "film",
                            "portrait", "natural", "dslr", "camera", "lens", "real"}),
    "design": frozenset({"poster", "logo", "flat", "vector", "graphic", "print", "minimal",
                         "minimalist", "icon", "typography", "geometric", "design"}),
    "painterly": frozenset({"painting", "oil", "watercolor", "sketch", "drawing",
                            "illustration", "art", "artistic", "painterly", "canvas"}),
}
_FAMILY_BONUS = 0.75
_STOPWORDS = frozenset((
    "a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "with", "like", "by", "for",
    "from", "its", "it", "is", "as", "into", "over", "very", "style", "styled", "look",
    "looking", "small", "big", "little", "some", "more", "most", "full",
))


def tokenize(text: str) -> list[str]:
    """Lowercase words, synonyms folded, stopwords dropped; '&' kept for 'b&w'."""
    words = re.findall(r"[a-z0-9&']+", text.lower().replace("-", " "))
    out = []
    for word in words:
        word = word.strip("'")
        if word.endswith("'s"):
            word = word[:-2]
        word = SYNONYMS.get(word, word)
        if word and word not in _STOPWORDS:
            out.append(word)
    return out


def _terms_of_text(text: str) -> set[str]:
    """Single words and adjacent-word phrases ('van-gogh') present in a text."""
    tokens = tokenize(text)
    terms = set(tokens)
    terms.update(f"{a}-{b}" for a, b in itertools.pairwise(tokens))
    terms.update(f"{a}-{b}-{c}" for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False))
    return terms


@lru_cache(maxsize=8)
def _style_terms(library: StyleLibrary) -> list[dict[str, float]]:
    table = []
    for style in library.styles:
        terms: dict[str, float] = {}
        for word in tokenize(style.description):
            terms[word] = max(terms.get(word, 0.0), _DESCRIPTION_WORD)
        for word in tokenize(style.name.replace("-", " ")):
            terms[word] = max(terms.get(word, 0.0), _NAME_WORD)
        for tag in style.tags:
            parts = tokenize(tag.replace("-", " "))
            key = "-".join(parts)
            weight = _TAG_PHRASE if len(parts) > 1 else _TAG_WORD
            if key:
                terms[key] = max(terms.get(key, 0.0), weight)
        table.append(terms)
    # words many styles share ("painting", "blue") say less than distinctive ones
    df: dict[str, int] = {}
    for terms in table:
        for term in terms:
            df[term] = df.get(term, 0) + 1
    return [{t: w / np.sqrt(df[t]) for t, w in terms.items()} for terms in table]


def score_text(text: str, library: StyleLibrary) -> np.ndarray:
    """How strongly a text names each library style (0 = not at all)."""
    present = _terms_of_text(text or "")
    scores = np.zeros(len(library), dtype=np.float64)
    for i, terms in enumerate(_style_terms(library)):
        scores[i] = sum(w for term, w in terms.items() if term in present)
        # a phrase also counts its words: do not count them twice
        for term, _w in terms.items():
            if "-" in term and term in present:
                scores[i] -= sum(terms.get(p, 0.0) for p in term.split("-")) * 0.5
    hinted = {fam for fam, words in FAMILY_HINTS.items() if words & present}
    if hinted:
        bonus = np.array([bool(s.families & hinted) for s in library.styles], dtype=np.float64)
        scores += _FAMILY_BONUS * bonus
    return np.maximum(scores, 0.0)


def match_styles(
    prompt: str, negative_prompt: str | None, library: StyleLibrary, eligible: np.ndarray,
    user_prompt: str | None = None,
) -> np.ndarray:
    """Scores per style: prompt score minus the negative prompt's; -inf where not eligible.

    When the prompt was enhanced, pass the user's own text as `user_prompt`: the words the
    enhancer added then count `ADDED_WORDS_WEIGHT` as much, so they never outvote the user.
    """
    scores = score_text(prompt, library)
    if user_prompt is not None and user_prompt != prompt:
        own = score_text(user_prompt, library)
        scores = own + ADDED_WORDS_WEIGHT * np.maximum(scores - own, 0.0)
    if negative_prompt:
        scores = scores - NEGATIVE_FACTOR * score_text(negative_prompt, library)
    return np.where(eligible, scores, -np.inf)


def style_probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax of the scores at `TEMPERATURE` (ineligible styles get 0)."""
    finite = np.isfinite(scores)
    logits = np.where(finite, scores / TEMPERATURE, -np.inf)
    logits = logits - logits[finite].max()
    p = np.where(finite, np.exp(logits), 0.0)
    return p / p.sum()


def pick_blend(scores: np.ndarray, rng: np.random.Generator) -> StyleBlend:
    """Seeded top-3 draw (Gumbel) from the score distribution, as a code-able blend."""
    p = style_probabilities(scores)
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, size=p.shape)))
    keys = np.where(p > 0, np.log(np.maximum(p, 1e-300)) + gumbel, -np.inf)
    strong = bool(np.max(scores) >= 1.5)
    if strong:  # a clear match always leads; the seed picks the supporting styles
        keys[int(np.argmax(scores))] = np.inf
    order = [int(i) for i in np.argsort(-keys, kind="stable") if keys[i] > -np.inf][:3]
    while len(order) < 3:
        order.append(order[0])
    lead = 7 if strong else int(rng.integers(5, 8))
    levels = [lead]
    for i in order[1:]:
        ratio = p[i] / p[order[0]] if p[order[0]] > 0 else 0.0
        level = round(7 * ratio) if strong else int(rng.integers(1, 4))
        levels.append(int(np.clip(level, 1, 7)) if i != order[0] else 0)
    jitter = int(rng.integers(1, 32))
    return StyleBlend(tuple(order), tuple(levels), jitter)  # type: ignore[arg-type]


def best_style(prompt: str, negative_prompt: str | None, library: StyleLibrary,
               style_type: str = "GENERAL") -> str:
    """The name of the single best-matching eligible style (for tools and tests)."""
    scores = match_styles(prompt, negative_prompt, library, library.eligible(style_type))
    return library.styles[int(np.argmax(scores))].name
