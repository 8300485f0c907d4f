"""What a user typed, checked before anything is sent: images as URLs or data URIs, the output
path, and the API key (given, or the development key of the data folder `serve` uses)."""

from __future__ import annotations

import base64
import mimetypes
import os
from pathlib import Path

from openremix.config import Settings


class InputError(Exception):
    """A problem with what the user typed; `str(self)` says what, in one sentence."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def image_argument(value: str) -> str:
    """A URL or data URI as is; a local file as a data URI."""
    if value.startswith(("http://", "https://", "data:")):
        return value
    path = Path(value)
    if not path.is_file():
        raise InputError(f"{value}: no such file and not a URL", 2)
    mime = mimetypes.guess_type(path.name)[0] or "image/png"
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def check_output_path(output: Path) -> None:
    """Refuse an output the image could not be written to, before the job runs (and is
    charged)."""
    if output.is_dir():
        raise InputError(f"cannot save to {output}: it is a folder", 2)
    folder = output.parent
    if not folder.is_dir():
        raise InputError(f"cannot save to {output}: no folder {folder}", 2)
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot save to {output}: the folder {folder} is not writable", 2)
    if output.exists() and not os.access(output, os.W_OK):
        raise InputError(f"cannot save to {output}: the file is not writable", 2)


def api_key_for(api_key: str, settings: Settings) -> str:
    """The key to send: the one given, else the development key `openremix serve` wrote into
    its data folder (found the way `serve` finds it: `--data-dir`, `OPENREMIX_DATA_DIR` or the
    per-user default). None found is an authentication error that says where it looked."""
    if api_key:
        return api_key
    path = settings.dev_key_path
    if path.is_file():
        return path.read_text().strip()
    raise InputError(
        f"no API key: give --api-key or set OPENREMIX_API_KEY (no development key at {path}; "
        "if `openremix serve` runs with another data folder, pass the same --data-dir or "
        "OPENREMIX_DATA_DIR)",
        3,
    )
