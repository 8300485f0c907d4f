"""Magic prompt (template enhancer) and the prompt content filter."""

from __future__ import annotations

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


def test_blocklist_matches_whole_words_only() -> None:
    assert blocked_term("a Beheading in the square") == "beheading"
    assert blocked_term("a cat on a sofa") is None
    assert blocked_term("classic snuffbox") is None
    assert blocked_term("a red balloon", blocklist=["red balloon"]) == "red balloon"
