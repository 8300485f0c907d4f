"""Magic prompt (template enhancer) and the prompt content filter."""

from __future__ import annotations

import pytest

from openremix.engine.prompting.template import (
    TemplatePromptEnhancer,
    apply_magic_prompt,
    needs_enhancement,
)
from openremix.engine.safety import blocked_term


def test_auto_enhances_only_short_or_vague_prompts() -> None:
    assert needs_enhancement("a cat")
    assert needs_enhancement("something very beautiful and really quite amazing indeed")
    assert not needs_enhancement("a ginger cat sleeping on a red sofa by the window")


def test_modes_on_off_auto() -> None:
    long = "a ginger cat sleeping on a red sofa by the window"
    assert apply_magic_prompt("a cat", "OFF", "GENERAL", 1) == "a cat"
    assert apply_magic_prompt(long, "AUTO", "GENERAL", 1) == long
    assert apply_magic_prompt(long, "ON", "GENERAL", 1).startswith(long + ", ")
    assert apply_magic_prompt("a cat", "AUTO", "GENERAL", 1).startswith("a cat, ")


def test_enhancement_is_seeded_and_fits_the_style_type() -> None:
    enhancer = TemplatePromptEnhancer()
    assert enhancer.enhance("a cat", "DESIGN", 5) == enhancer.enhance("a cat", "DESIGN", 5)
    variants = {enhancer.enhance("a cat", "GENERAL", seed) for seed in range(10)}
    assert len(variants) > 3
    realistic = enhancer.enhance("a cat", "REALISTIC", 3)
    assert any(w in realistic for w in ("photograph", "film"))


STYLE_TYPES = ("GENERAL", "AUTO", "REALISTIC", "DESIGN", "FICTION", "STYLIZED")


def added(prompt: str, style_type: str, seed: int) -> str:
    """What the template appended to `prompt` (lower case)."""
    return TemplatePromptEnhancer().enhance(prompt, style_type, seed)[len(prompt):].lower()


@pytest.mark.parametrize(("prompt", "never"), [
    ("neon noir", ("golden hour", "midday", "daylight", "sun", "warm", "pastel")),
    ("a city street at night", ("golden hour", "midday", "daylight", "sun")),
    ("a sunny beach", ("moonlit", "night", "neon")),
    ("black and white photo of a cat", ("vivid", "colorful", "jewel", "neon", "pastel")),
    ("a watercolor fox", ("photograph", "film", "vector", "poster", "print")),
    ("a snowy winter village", ("warm", "amber", "golden")),
])
def test_magic_prompt_never_adds_what_the_prompt_contradicts(prompt, never) -> None:
    for style_type in STYLE_TYPES:
        for seed in range(25):
            text = added(prompt, style_type, seed)
            assert not any(word in text for word in never), (style_type, seed, text)


def test_short_prompts_get_suffixes_of_their_own() -> None:
    prompts = ("a cat", "a dog", "a house", "a boat", "a tree")
    for seed in (1, 2, 3):
        suffixes = [added(p, "GENERAL", seed) for p in prompts]
        assert len(set(suffixes)) == len(prompts), suffixes


def test_same_prompt_and_seed_give_the_same_text() -> None:
    for prompt in ("a cat", "a city street at night", "old sepia photograph"):
        assert {TemplatePromptEnhancer().enhance(prompt, "GENERAL", 7) for _ in range(3)} == {
            TemplatePromptEnhancer().enhance(prompt, "GENERAL", 7)}


def test_a_prompt_that_says_enough_is_left_alone() -> None:
    """Medium, light and colours all named: nothing to add, even with magic prompt ON."""
    for prompt in ("neon noir", "a watercolor of a red fox at sunset"):
        assert apply_magic_prompt(prompt, "ON", "GENERAL", 3) == prompt
        assert apply_magic_prompt(prompt, "AUTO", "REALISTIC", 4) == prompt


def test_what_the_prompt_states_is_not_stated_again() -> None:
    """A prompt naming its light gets no light phrase; one naming its medium no medium."""
    for seed in range(10):
        lit = added("a fox at sunset", "GENERAL", seed)
        assert not any(w in lit for w in ("light", "glow", "sun", "moonlit", "lighting"))
        painted = added("an oil painting of a fox", "REALISTIC", seed)
        assert not any(w in painted for w in ("photograph", "film still", "film look"))


def test_blocklist_matches_whole_words_only() -> None:
    assert blocked_term("a Beheading in the square") == "beheading"
    assert blocked_term("a cat on a sofa") is None
    assert blocked_term("classic snuffbox") is None
    assert blocked_term("a red balloon", blocklist=["red balloon"]) == "red balloon"
