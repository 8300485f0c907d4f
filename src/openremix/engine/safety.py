"""The prompt content filter every engine applies before it generates anything.

A prompt that names a blocklisted term (whole words, case-insensitive) gets no image: the
job's output says which term, with `is_image_safe` false. Engines whose models carry their own
safety checker (some diffusers pipelines) apply it as well, after generating.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from openremix.contract.request import RemixRequest
from openremix.engine.base import EngineOutput

DEFAULT_BLOCKLIST: tuple[str, ...] = (
    "child pornography", "child porn", "csam", "bestiality", "beheading", "snuff film",
)
"""Terms the default content filter refuses (whole words, case-insensitive)."""


def blocked_term(text: str, blocklist: Iterable[str] = DEFAULT_BLOCKLIST) -> str | None:
    """The first blocklisted term found in `text` (whole words), or None."""
    lowered = " ".join(re.findall(r"[a-z0-9]+", text.lower()))
    for term in blocklist:
        needle = " ".join(re.findall(r"[a-z0-9]+", term.lower()))
        if needle and re.search(rf"\b{re.escape(needle)}\b", lowered):
            return term
    return None


def refused_prompt(params: RemixRequest, blocklist: Iterable[str]) -> EngineOutput | None:
    """The no-image output for a prompt the filter refuses; None when the prompt may run."""
    term = blocked_term(params.prompt, blocklist)
    if term is None:
        return None
    return EngineOutput(image=None, prompt=params.prompt, seed=int(params.seed or 0),
                        is_image_safe=False,
                        error=f"prompt blocked by the content filter: {term!r}")
