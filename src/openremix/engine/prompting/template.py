"""Magic prompt: a seeded template enhancer (the content filter is `engine.safety`).

`magic_prompt`: AUTO enhances short or vague prompts, ON always, OFF never. The user's text is
kept as the prefix; a medium, a light and a colour or detail phrase are appended where the
prompt leaves them open, never contradicting it (`vocabulary`), chosen by the prompt and the
seed from lists that fit the `style_type`. The style engine matches styles against the used
prompt, so the added phrases also steer the look. Where the optional `llm` extra is installed,
the engine uses `prompting.llm.LlamaPromptEnhancer` (SmolLM2) behind the same `PromptEnhancer`
protocol; this template is its fallback.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from typing import Protocol

from openremix.engine.prompting.vocabulary import (
    COLOUR,
    COLOUR_PHRASES,
    DETAIL_PHRASES,
    LIGHT,
    LIGHT_PHRASES,
    MEDIUM,
    MEDIUM_PHRASES,
    OPPOSITES,
    PROMPT_WORDS,
    Phrase,
)

MIN_WORDS = 6
"""AUTO enhances prompts with fewer words than this..."""

VISUAL_NOUNS = frozenset((
    "person", "man", "woman", "girl", "boy", "child", "people", "face", "portrait", "cat",
    "dog", "bird", "horse", "animal", "tree", "forest", "flower", "flowers", "garden",
    "mountain", "mountains", "river", "lake", "sea", "ocean", "beach", "sky", "cloud", "clouds",
    "sun", "moon", "star", "stars", "city", "street", "building", "house", "castle", "room",
    "car", "ship", "boat", "train", "road", "bridge", "window", "table", "cup", "coffee",
    "food", "fruit", "astronaut", "rocket", "robot", "dragon", "field", "desert", "snow",
    "rain", "night", "landscape", "skyline", "village", "market", "kitchen",
))
"""...or prompts that name none of these concrete things."""


class PromptEnhancer(Protocol):
    """Rewrites a prompt into a richer one; deterministic for a given seed."""

    def enhance(self, prompt: str, style_type: str, seed: int) -> str:
        """The enhanced prompt (the user's text stays the prefix)."""
        ...


def needs_enhancement(prompt: str) -> bool:
    """AUTO rule: short (< MIN_WORDS words) or without a concrete visual noun."""
    words = re.findall(r"[a-z]+", prompt.lower())
    if len(words) < MIN_WORDS:
        return True
    singular = {w[:-1] if w.endswith("s") else w for w in words}
    return not (VISUAL_NOUNS & (set(words) | singular))


def read_prompt(prompt: str) -> tuple[frozenset[str], frozenset[str]]:
    """(aspects the prompt already states, traits it carries), from `vocabulary.PROMPT_WORDS`."""
    text = " ".join(re.findall(r"[a-z0-9&\-]+", prompt.lower()))
    labels: set[str] = set()
    for term, found in PROMPT_WORDS.items():
        if re.search(rf"(?<![a-z0-9&\-]){re.escape(term)}(?![a-z0-9&\-])", text):
            labels |= found
    aspects = frozenset(labels & {MEDIUM, LIGHT, COLOUR})
    return aspects, frozenset(labels - aspects)


def fits(phrase: Phrase, traits: frozenset[str]) -> bool:
    """False when the phrase contradicts one of the prompt's traits (`vocabulary.OPPOSITES`)."""
    return not any((a in phrase.traits and b in traits) or (b in phrase.traits and a in traits)
                   for a, b in OPPOSITES)


def _pick(rng: random.Random, pool: Sequence[Phrase], traits: frozenset[str],
          lowered: str) -> Phrase | None:
    """A phrase that fits and is not in the prompt yet; shared traits make one likelier."""
    options = [p for p in pool if fits(p, traits) and p.text not in lowered]
    if not options:
        return None
    return rng.choices(options, weights=[1 + 2 * len(p.traits & traits) for p in options])[0]


class TemplatePromptEnhancer:
    """Adds what the prompt leaves open, in words that fit it, chosen by prompt and seed.

    Up to three phrases: a medium (from the `style_type`'s list) unless the prompt names one, a
    light unless it names its light or time of day, and a colour (unless it names its colours)
    or a detail. None of them contradicts the prompt ("neon noir" never gets golden hour), and
    a prompt that already states its medium, light and colours is left as it is. The choice is
    seeded by the seed, the style type and the prompt itself, so two prompts differ.
    """

    def enhance(self, prompt: str, style_type: str, seed: int) -> str:
        """`prompt, <phrase>, ...`: the user's text first, then what fits."""
        base = prompt.strip().rstrip(".,;")
        aspects, traits = read_prompt(base)
        if {MEDIUM, LIGHT, COLOUR} <= aspects:
            return prompt  # it says enough
        rng = random.Random(f"magic:{seed}:{style_type}:{' '.join(base.lower().split())}")
        lowered = base.lower()
        pools: list[Sequence[Phrase]] = []
        if MEDIUM not in aspects:
            pools.append(MEDIUM_PHRASES.get(style_type, MEDIUM_PHRASES["GENERAL"]))
        if LIGHT not in aspects:
            pools.append(LIGHT_PHRASES)
        pools.append(DETAIL_PHRASES if COLOUR in aspects
                     else rng.choice((COLOUR_PHRASES, DETAIL_PHRASES)))
        added: list[str] = []
        for pool in pools:
            phrase = _pick(rng, pool, traits, lowered)
            if phrase is not None:
                added.append(phrase.text)
                traits |= phrase.traits  # later phrases fit the earlier ones too
        return ", ".join([base, *added])


def apply_magic_prompt(
    prompt: str, mode: str, style_type: str, seed: int,
    enhancer: PromptEnhancer | None = None,
) -> str:
    """The prompt to use for `magic_prompt` mode AUTO | ON | OFF."""
    if mode == "OFF" or (mode == "AUTO" and not needs_enhancement(prompt)):
        return prompt
    return (enhancer or TemplatePromptEnhancer()).enhance(prompt, style_type, seed)

