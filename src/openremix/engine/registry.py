"""`load_engine(name)`: the engine a worker runs, by name or by import path.

- `style`: the offline default (`StyleEngine`).
- `diffusers`: `DiffusersEngine` (needs the `diffusers` extra: torch, diffusers, transformers).
- `module:attr`: a plugin, like Cog's predictor path: `attr` is a class (or factory) in an
  importable module whose instances implement the `Engine` protocol.
"""

from __future__ import annotations

import importlib
from typing import Any

from openremix.engine.base import Engine, EngineError


def load_engine(name: str, options: dict[str, Any] | None = None) -> Engine:
    """Build (not yet `load()`) the engine called `name`; EngineError says why it cannot.

    `options` are the diffusers engine's keyword arguments (model, device, dtype, ip_adapter):
    the settings' values (`server.wiring.diffusers_options`), passed as they are; an empty or
    missing model is an EngineError that says what to set.
    """
    name = name.strip()
    if name == "style":
        from openremix.engine.style.engine import StyleEngine

        return StyleEngine()
    if name == "diffusers":
        try:
            from openremix.engine.diffusion.engine import DiffusersEngine
        except ImportError as exc:
            raise EngineError(
                "the diffusers engine needs `pip install openremix[diffusers]`"
            ) from exc
        return DiffusersEngine(**{"model": "", **(options or {})})
    if ":" in name:
        return _plugin(name)
    raise EngineError(
        f"unknown engine {name!r}: use 'style', 'diffusers' or 'module:attr' naming a class"
    )


def _plugin(path: str) -> Engine:
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EngineError(f"cannot import engine module {module_name!r}: {exc}") from exc
    target = module
    for part in attr.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise EngineError(f"engine module {module_name!r} has no attribute {attr!r}")
    try:
        engine = target() if callable(target) else target
    except Exception as exc:  # a plugin's constructor: report it, whatever it raised
        raise EngineError(f"cannot create engine {path!r}: {exc}") from exc
    missing = [m for m in ("name", "load", "batch_key", "remix") if not hasattr(engine, m)]
    if missing:
        raise EngineError(f"{path!r} is not an engine: it lacks {', '.join(missing)}")
    return engine
