"""Magic prompt: a seeded template enhancer (the content filter is `engine.safety`).

`magic_prompt`: AUTO enhances short or vague prompts, ON always, OFF never. The user's text is
kept as the prefix; a few style, light and detail phrases are appended, chosen by the seed from
lists that fit the `style_type`. The style engine matches styles against the used prompt, so
the added phrases also steer the look. Where the optional `llm` extra is installed, the engine
uses `prompting.llm.LlamaPromptEnhancer` (SmolLM2) behind the same `PromptEnhancer` protocol;
this template is its fallback.
"""

from __future__ import annotations

import random
import re
from typing import Protocol

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

STYLE_PHRASES: dict[str, tuple[str, ...]] = {
    "REALISTIC": ("cinematic film still", "natural photograph", "35mm analog film look",
                  "editorial photograph", "soft documentary photograph"),
    "DESIGN": ("flat vector poster", "bold graphic print", "minimal geometric design",
               "screen print poster", "retro risograph print"),
    "FICTION": ("expressive oil painting", "storybook watercolor illustration",
                "dreamy impressionist painting", "swirling post-impressionist brushwork",
                "moody fantasy illustration"),
    "STYLIZED": ("bold stylized illustration", "pop art comic rendering",
                 "colorful expressionist painting", "stained glass mosaic", "ink sketch"),
}
STYLE_PHRASES["GENERAL"] = tuple(p for k in ("REALISTIC", "DESIGN", "FICTION", "STYLIZED")
                                 for p in STYLE_PHRASES[k][:3])
STYLE_PHRASES["AUTO"] = STYLE_PHRASES["GENERAL"]
LIGHT_PHRASES = ("golden hour light", "soft diffused light", "dramatic side lighting",
                 "cool moonlit tones", "warm ambient glow", "high contrast light")
DETAIL_PHRASES = ("rich textures", "harmonious color palette", "fine detail",
                  "balanced composition", "vivid colors", "subtle film grain")

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


class TemplatePromptEnhancer:
    """Appends one style, one light and one detail phrase, picked by the seed."""

    def enhance(self, prompt: str, style_type: str, seed: int) -> str:
        """`prompt, <style>, <light>, <detail>`; phrases already in the prompt are skipped."""
        rng = random.Random(f"magic:{seed}:{style_type}")
        base = prompt.strip().rstrip(".,;")
        lowered = base.lower()
        added = []
        for pool in (STYLE_PHRASES.get(style_type, STYLE_PHRASES["GENERAL"]), LIGHT_PHRASES,
                     DETAIL_PHRASES):
            options = [p for p in pool if p not in lowered]
            if options:
                added.append(rng.choice(options))
        return ", ".join([base, *added])


def apply_magic_prompt(
    prompt: str, mode: str, style_type: str, seed: int,
    enhancer: PromptEnhancer | None = None,
) -> str:
    """The prompt to use for `magic_prompt` mode AUTO | ON | OFF."""
    if mode == "OFF" or (mode == "AUTO" and not needs_enhancement(prompt)):
        return prompt
    return (enhancer or TemplatePromptEnhancer()).enhance(prompt, style_type, seed)

