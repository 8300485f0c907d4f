"""IP-Adapter: `style_reference_images` as an image embedding the UNet attends to.

Loaded once with the pipeline (`load_ip_adapter`); each pipeline call then gets one averaged
embedding of its references (`reference_embeds`), or zeros with the adapter's scale at 0 when
a call has none, so one loaded adapter serves jobs with and without references.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from PIL import Image

from openremix.engine.base import EngineError

IP_ADAPTER_SCALE = 0.6
"""How strongly the references condition the UNet (`set_ip_adapter_scale`)."""


def load_ip_adapter(pipe: Any, spec: str) -> None:
    """`spec`: a local weight file, or "<owner>/<repo>/<subfolder>/<weight file>" on the hub."""
    if getattr(pipe, "unet", None) is None:
        raise EngineError(f"ip_adapter: {type(pipe).__name__} has no UNet to condition")
    path = Path(spec).expanduser()
    if path.is_file():
        source, subfolder, weight = str(path.parent), "", path.name
    else:
        parts = spec.strip("/").split("/")
        if len(parts) < 3:
            raise EngineError(f"ip_adapter {spec!r}: give a weight file or owner/repo/.../file")
        source, subfolder, weight = "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]
    try:
        pipe.load_ip_adapter(source, subfolder=subfolder, weight_name=weight,
                             local_files_only=path.is_file())
    except Exception as exc:  # missing files, wrong architecture: one message
        raise EngineError(f"cannot load the IP-Adapter {spec!r}: {exc}") from exc


def condition_on_references(pipe: Any, references: list[Image.Image],
                            cfg: bool) -> list[torch.Tensor]:
    """Set the adapter's scale for this call and return its `ip_adapter_image_embeds`."""
    embeds = reference_embeds(pipe, references, cfg)
    pipe.set_ip_adapter_scale(IP_ADAPTER_SCALE if references else 0.0)
    return embeds


def reference_embeds(pipe: Any, references: list[Image.Image], cfg: bool) -> list[torch.Tensor]:
    """One averaged image embedding per IP-Adapter (zeros without references), CFG-stacked."""
    from diffusers.models.embeddings import ImageProjection

    images = references or [Image.new("RGB", (224, 224), (127, 127, 127))]
    embeds = []
    for layer in pipe.unet.encoder_hid_proj.image_projection_layers:
        hidden = not isinstance(layer, ImageProjection)
        with torch.inference_mode():
            pos, neg = pipe.encode_image(images, pipe.device, 1, hidden)
        pos, neg = pos.mean(0, keepdim=True)[None], neg.mean(0, keepdim=True)[None]
        if not references:
            pos = torch.zeros_like(pos)
        embeds.append(torch.cat([neg, pos]) if cfg else pos)
    return embeds
