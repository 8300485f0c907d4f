"""What the template enhancer knows about words: the phrases it may add and what prompts say.

Every phrase and every prompt word carries *traits* (`warm`, `night`, `photo`, ...). A phrase is
never added to a prompt whose traits it contradicts (`OPPOSITES`), and phrases that share a
prompt's traits are likelier. A prompt word also says which *aspect* it already covers (its
medium, its light, its colours), so the enhancer adds nothing for that aspect.
"""

from __future__ import annotations

from dataclasses import dataclass

MEDIUM, LIGHT, COLOUR = "medium", "light", "colour"
"""The aspects a prompt may already state; the enhancer fills in only the missing ones."""

OPPOSITES: tuple[tuple[str, str], ...] = (
    ("warm", "cool"), ("day", "night"), ("bright", "dark"), ("vivid", "muted"),
    ("vivid", "monochrome"), ("photo", "painted"), ("photo", "graphic"),
    ("painted", "graphic"),
)
"""Pairs of traits that contradict each other."""


@dataclass(frozen=True)
class Phrase:
    text: str
    traits: frozenset[str] = frozenset()


def _phrases(*items: tuple[str, str]) -> tuple[Phrase, ...]:
    """`("text", "trait trait")` pairs as phrases."""
    return tuple(Phrase(text, frozenset(traits.split())) for text, traits in items)


MEDIUM_PHRASES: dict[str, tuple[Phrase, ...]] = {
    "REALISTIC": _phrases(
        ("cinematic film still", "photo"), ("natural photograph", "photo"),
        ("35mm analog film look", "photo"), ("editorial photograph", "photo bright"),
        ("soft documentary photograph", "photo muted")),
    "DESIGN": _phrases(
        ("flat vector poster", "graphic"), ("bold graphic print", "graphic vivid"),
        ("minimal geometric design", "graphic"), ("screen print poster", "graphic"),
        ("retro risograph print", "graphic muted")),
    "FICTION": _phrases(
        ("expressive oil painting", "painted"),
        ("storybook watercolor illustration", "painted bright"),
        ("dreamy impressionist painting", "painted bright"),
        ("swirling post-impressionist brushwork", "painted night"),
        ("moody fantasy illustration", "painted dark")),
    "STYLIZED": _phrases(
        ("bold stylized illustration", "painted vivid"),
        ("pop art comic rendering", "graphic vivid"),
        ("colorful expressionist painting", "painted vivid"),
        ("stained glass mosaic", "graphic vivid"),
        ("ink sketch", "painted monochrome")),
}
MEDIUM_PHRASES["GENERAL"] = tuple(p for k in ("REALISTIC", "DESIGN", "FICTION", "STYLIZED")
                                  for p in MEDIUM_PHRASES[k][:3])
MEDIUM_PHRASES["AUTO"] = MEDIUM_PHRASES["GENERAL"]

LIGHT_PHRASES = _phrases(
    ("golden hour light", "warm day"), ("soft diffused light", "bright"),
    ("dramatic side lighting", "dark"), ("cool moonlit tones", "cool night dark"),
    ("warm ambient glow", "warm"), ("high contrast light", ""),
    ("bright midday sun", "day bright"), ("low-key chiaroscuro lighting", "dark"),
    ("neon glow", "night vivid"), ("overcast daylight", "day muted cool"),
)
COLOUR_PHRASES = _phrases(
    ("harmonious color palette", ""), ("vivid colors", "vivid"),
    ("muted earth tones", "muted warm"), ("cool blue palette", "cool"),
    ("warm amber tones", "warm"), ("pastel hues", "bright muted"),
    ("deep jewel tones", "vivid dark"),
)
DETAIL_PHRASES = _phrases(
    ("rich textures", ""), ("fine detail", ""), ("balanced composition", ""),
    ("subtle film grain", "photo"), ("crisp clean lines", "graphic"),
    ("visible brushstrokes", "painted"), ("deep shadows", "dark"), ("atmospheric depth", ""),
)


def _lexicon(*items: tuple[str, str]) -> dict[str, frozenset[str]]:
    """`("term term", "aspect/trait ...")`: each term (a word or a phrase) -> its labels."""
    table: dict[str, frozenset[str]] = {}
    for terms, labels in items:
        for term in terms.split(","):
            table[term.strip()] = frozenset(labels.split())
    return table


PROMPT_WORDS: dict[str, frozenset[str]] = _lexicon(
    # medium
    ("photo, photos, photograph, photography, photographic, photorealistic, realistic, dslr, "
     "polaroid, 35mm, analog, film still, snapshot, cinematic", f"{MEDIUM} photo"),
    ("painting, painted, oil, watercolor, watercolour, acrylic, gouache, impressionist, "
     "expressionist, impressionism, brushwork, van gogh, monet, sketch, drawing, drawn, pencil, "
     "charcoal, ink, illustration, illustrated, anime, manga, cartoon, storybook, fresco",
     f"{MEDIUM} painted"),
    ("poster, vector, flat design, graphic, logo, print, risograph, screen print, woodcut, "
     "linocut, comic, pop art, halftone, mosaic, stained glass, pixel art, mondrian, bauhaus, "
     "collage, papercut", f"{MEDIUM} graphic"),
    ("noir, film noir", f"{MEDIUM} {LIGHT} dark night"),
    ("3d render, render, cgi, low poly, claymation, art deco, art nouveau, ukiyo-e, cyberpunk, "
     "synthwave, vaporwave, steampunk, baroque", MEDIUM),
    # light and time of day
    ("neon", f"{LIGHT} {COLOUR} night vivid"),
    ("night, midnight, nighttime, nocturnal, moon, moonlit, moonlight, starlit, starry",
     f"{LIGHT} night dark"),
    ("golden hour, sunset, sunrise, dawn, dusk, twilight, candlelit, candlelight, firelight, "
     "lantern, lanterns", f"{LIGHT} warm"),
    ("daylight, sunlit, sunlight, sunny, midday, noon, morning, afternoon", f"{LIGHT} day bright"),
    ("light, lighting, lit, glow, glowing, backlit, shadow, shadows, silhouette, studio "
     "lighting, spotlight, overcast, foggy, fog, misty, chiaroscuro", LIGHT),
    ("dark, gloomy, moody, gothic, horror, eerie", "dark"),
    ("bright, cheerful, airy, luminous", "bright"),
    # colour
    ("black and white, monochrome, grayscale, greyscale, b&w, sepia, duotone",
     f"{COLOUR} monochrome muted"),
    ("colorful, colourful, vivid, saturated, psychedelic, rainbow, vibrant",
     f"{COLOUR} vivid"),
    ("pastel, pastels, muted, faded, desaturated, washed out, vintage", f"{COLOUR} muted"),
    ("warm tones, amber, orange, autumn, autumnal", f"{COLOUR} warm"),
    ("cool tones, icy, winter, snow, snowy, frost, teal", f"{COLOUR} cool"),
    ("red, blue, green, yellow, purple, violet, pink, magenta, cyan, turquoise, gold, golden, "
     "silver, crimson, scarlet, emerald, ginger, palette, colors, colours", COLOUR),
)
"""Prompt terms -> the aspects they cover and the traits they carry."""
