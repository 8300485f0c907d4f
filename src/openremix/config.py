"""The one `Settings` object: every knob is an `OPENREMIX_*` environment variable.

Read once at start (`Settings()`), then passed down explicitly; nothing else reads the environment.
The README's configuration table is checked against these fields by a test.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_data_dir() -> Path:
    """The per-user data folder, the same from any working directory, so that `serve`, `keys`
    and `remix` find one another's files: `$XDG_DATA_HOME/openremix` (else
    `~/.local/share/openremix`); `~/Library/Application Support/openremix` on macOS,
    `%LOCALAPPDATA%\\openremix` on Windows."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "openremix"


DATA_DIR_SHOWN = "~/.local/share/openremix"
"""How the README's table shows the default data folder (it depends on the user)."""


class Settings(BaseSettings):
    """openremix configuration. Each field is the env var `OPENREMIX_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="OPENREMIX_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address the API binds to.")
    port: int = Field(8000, ge=0, le=65535, description="Port the API listens on.")
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Folder for the SQLite database, stored outputs, the development API key "
        "and pulled models (embedded default). The default is per user "
        "(`$XDG_DATA_HOME/openremix` where that is set), so every command finds it from any "
        "folder.",
    )
    database_url: str = Field(
        "",
        description="Job store. Empty: SQLite file `openremix.db` in the data folder. "
        "`postgresql://user:pass@host/db` for many machines (`pip install "
        "'openremix[postgres]'`).",
    )
    auto_migrate: bool = Field(
        True,
        description="PostgreSQL: create or upgrade the schema when a process opens the store. "
        "Off (0): only `openremix db upgrade` does, and processes refuse a schema that is not "
        "up to date.",
    )
    storage_url: str = Field(
        "",
        description="Where outputs are stored: a folder, a `file://` URL or `s3://bucket/prefix` "
        "(S3-compatible; `pip install 'openremix[s3]'`, credentials and region from the standard "
        "`AWS_*` variables or `~/.aws`). Empty: `outputs` in the data folder. Every API replica "
        "and worker must name the same storage.",
    )
    s3_endpoint_url: str = Field(
        "",
        description="Endpoint of an S3-compatible service other than AWS for `s3://` storage "
        "(MinIO, R2, Ceph, ...), e.g. `http://minio:9000`. Empty: AWS S3.",
    )
    public_url: str = Field(
        "",
        description="Public base URL (e.g. https://remix.example.com) used to build absolute "
        "status/response/output URLs. Empty: taken from each request's own scheme and host.",
    )
    api_keys: str = Field(
        "",
        description="Comma-separated API keys accepted in addition to keys made with "
        "`openremix keys create`. Each gets `default_credits` on first use.",
    )
    default_credits: float = Field(
        1000.0, description="Credits given to a key from `api_keys` when first seen."
    )
    cost_per_request: float = Field(0.04, description="Credits charged per remix.")
    rate_limit_per_minute: int = Field(
        600, description="Requests per minute per API key (token bucket); 0 disables."
    )
    max_queue_depth: int = Field(
        0, description="Submits answer 503 (Retry-After) while this many jobs wait; 0: no limit."
    )
    retention_seconds: int = Field(
        3600, description="How long a job's status, result and output stay readable."
    )
    sync_timeout_seconds: float = Field(
        25.0,
        description="How long a sync `/v1` call waits for its job before answering 504 "
        "(the job goes on). Below the segmind SDK's 30 s read timeout.",
    )
    lease_seconds: float = Field(
        30.0, description="A claimed job's lease; a worker renews it while it runs."
    )
    max_attempts: int = Field(
        3, description="Claims of one job before it is FAILED (a worker died each time)."
    )
    job_timeout_seconds: float = Field(
        600.0, description="A job still running after this long is FAILED (execution timeout)."
    )
    engine: str = Field(
        "style",
        description="Engine: `style` (offline default), `diffusers`, or `module:attr` "
        "naming a class that implements the Engine protocol.",
    )
    model: str = Field(
        "",
        description="Diffusers engine (required with it): a local model folder, a name pulled "
        "with `openremix models pull`, or a hub id such as `stabilityai/sdxl-turbo` (machines "
        "with internet).",
    )
    device: str = Field(
        "",
        description="Diffusers engine device: cuda (or cuda:N), mps or cpu (empty: the best "
        "available).",
    )
    dtype: Literal["", "auto", "float16", "fp16", "bfloat16", "bf16", "float32", "fp32"] = Field(
        "",
        description="Diffusers engine dtype: float16, bfloat16 or float32 (empty: bfloat16 "
        "or float16 on a GPU, float32 on a CPU).",
    )
    ip_adapter: str = Field(
        "",
        description="Diffusers engine: IP-Adapter weights for `style_reference_images`, a local "
        "weight file or `owner/repo/subfolder/file` on the hub (e.g. "
        "`h94/IP-Adapter/models/ip-adapter_sd15.safetensors`); empty: the references' colours "
        "only.",
    )
    max_side: int = Field(
        0,
        ge=0,
        description="Diffusers engine: the longest side a remix is generated at (the output is "
        "then resized to exactly the requested size); 0: no cap beyond the model's own.",
    )
    cpu_offload: bool = Field(
        False,
        description="Diffusers engine: keep the model's components in CPU memory and move each "
        "to the GPU only while it runs (`enable_model_cpu_offload`), for cards too small to "
        "hold the whole model (Ideogram 4 has about 55 GB of bf16 weights); slower.",
    )
    model_variant: str = Field(
        "",
        description="Diffusers engine: the weight files' variant to load where a model "
        "repository carries several (e.g. `fp16`); empty: the default files.",
    )
    enhancer_max_tokens: int = Field(
        1024,
        ge=1,
        description="Diffusers engine: most tokens a model's own prompt enhancer writes for "
        "`magic_prompt` (Ideogram 4's structured caption; bounds its time).",
    )
    max_batch: int = Field(
        4, description="Most jobs one engine call runs together (engines that batch)."
    )
    batch_window_ms: int = Field(
        50, description="How long a worker waits for more compatible jobs to fill a batch."
    )
    workers: int = Field(1, description="In-process workers started by `openremix serve`.")
    allow_private_urls: bool = Field(
        False,
        description="Allow image URLs that resolve to loopback, private or link-local "
        "addresses (off: SSRF protection).",
    )
    max_image_bytes: int = Field(10 * 1024 * 1024, description="Largest accepted input image.")
    fetch_timeout_seconds: float = Field(10.0, description="Timeout for fetching image URLs.")
    max_body_bytes: int = Field(
        32 * 1024 * 1024, description="Largest accepted request body (413 above)."
    )
    request_read_timeout_seconds: float = Field(
        60.0,
        gt=0,
        description="Seconds a request may take to arrive whole (headers and body) from its "
        "first byte, or a new connection to send one; slower clients are disconnected.",
    )
    webhook_secret: str = Field(
        "",
        description="Secret that signs webhooks (Standard Webhooks; a `whsec_` + base64 secret "
        "is base64-decoded to the HMAC key). Empty: one is made once and kept in the data "
        "folder's `webhook-secret` file. Set it on every machine when several serve the API.",
    )
    webhook_retry_base_seconds: float = Field(
        5.0,
        gt=0,
        description="First delay before retrying a webhook; each next one is 3x longer (at "
        "most 10 min), until 1 h after the first attempt.",
    )
    log_level: str = Field("info", description="Log level: debug, info, warning, error.")
    # --- image safety (engine.screen) ---
    image_safety: bool = Field(
        True,
        description="Screen every input image, style reference image and output with Yahoo's "
        "open_nsfw classifier (offline, about 15 ms an image on a CPU); an image scoring at or "
        "above `image_safety_threshold` fails its job with a content error and is never stored. "
        "Off (0): only the prompt word list screens.",
    )
    image_safety_threshold: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="open_nsfw score (0..1) at or above which an image is blocked. 0.8 is where "
        "open_nsfw's authors call an image very likely NSFW (below 0.2: very likely safe); "
        "real photos of people score well below it. 0 blocks every image.",
    )
    image_safety_threads: int = Field(
        0, ge=0, description="CPU threads of the image safety classifier; 0: onnxruntime's choice."
    )
    # -- live previews (progress) --
    preview_seconds: float = Field(
        1.0,
        ge=0,
        description="Seconds between two live previews of a running job, for engines that "
        "make them (diffusers: its latents projected to a small JPEG); the event stream sends "
        "them to the job's owner. 0 turns previews off.",
    )
    # --- Ideogram's and OpenAI's wires ---
    wire_sync_timeout_seconds: float = Field(
        300.0,
        gt=0,
        description="How long an Ideogram (`/v1/ideogram-v3/remix`, `-v4`) or OpenAI "
        "(`/v1/images/edits`) call waits for its job before answering 504 (the job goes on). "
        "Their clients wait minutes, and one call may ask for 8 images.",
    )
    # --- the queue at scale (issue 15) ---
    max_running_per_key: int = Field(
        0,
        ge=0,
        description="Most jobs one API key may have running at once, so that one key cannot "
        "take every worker (claims are fair across keys either way); 0: no cap. Under a cap, "
        "PostgreSQL claims run one at a time.",
    )
    # --- the API when its store cannot serve (issue 13) ---
    store_wait_seconds: float = Field(
        5.0,
        gt=0,
        description="Most seconds one API call waits for the job store (SQLite locked by "
        "another process, PostgreSQL away) before it answers 503 with Retry-After (`/readyz` "
        "waits at most 1 s to test that the store takes writes). Workers keep retrying longer "
        "(30 s and more) to ride out the fault.",
    )

    @property
    def dev_key_path(self) -> Path:
        """The development API key `serve` makes on first start (mode 600)."""
        return self.data_dir / "dev-api-key"

    @property
    def sqlite_path(self) -> Path:
        return self.data_dir / "openremix.db"

    @property
    def outputs_dir(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def models_dir(self) -> Path:
        """Where `openremix models pull` puts downloaded models."""
        return self.data_dir / "models"

    def resolved_model(self) -> str:
        """`model` as a local folder when it was pulled into the data folder, else as given."""
        pulled = self.models_dir / self.model.replace("/", "--")
        return str(pulled) if self.model and pulled.is_dir() else self.model


def settings_table() -> str:
    """The README's configuration table, made from the fields above (a test keeps them equal)."""
    rows = ["| variable | default | what |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = DATA_DIR_SHOWN if name == "data_dir" else info.default
        shown = f"`{default}`" if default not in ("", None) else "(empty)"
        rows.append(f"| `OPENREMIX_{name.upper()}` | {shown} | {info.description} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(settings_table())
