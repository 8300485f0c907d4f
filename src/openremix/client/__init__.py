"""The openremix Python SDK: `Client` (blocking) and `AsyncClient` (asyncio).

Talks to `openremix serve`, or to the hosted Ideogram 3 Remix API it is compatible with::

    from openremix.client import Client

    with Client(api_key="...", base_url="http://127.0.0.1:8000") as client:
        result = client.remix("photo.jpg", "a watercolour painting", seed=7)
        result.save("remix.jpg")

Depends only on `openremix.contract` (parameters are validated with the server's own rules).
"""

from openremix.client._async import AsyncClient, AsyncJob
from openremix.client._errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    Conflict,
    ConnectionError,
    InferenceFailed,
    InferenceTimeout,
    InsufficientCredits,
    NotFound,
    RateLimited,
    ServerError,
)
from openremix.client._inputs import ColorPaletteParam, ImageInput, PaletteMemberParam, RemixParams
from openremix.client._results import Credits, Progress, ProgressCallback, Result, Status
from openremix.client._sync import Client, Job
from openremix.contract.errors import OpenRemixError
from openremix.contract.request import ColorPalette, PaletteMember

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncJob",
    "AuthenticationError",
    "BadRequest",
    "Client",
    "ColorPalette",
    "ColorPaletteParam",
    "Conflict",
    "ConnectionError",
    "Credits",
    "ImageInput",
    "InferenceFailed",
    "InferenceTimeout",
    "InsufficientCredits",
    "Job",
    "NotFound",
    "OpenRemixError",
    "PaletteMember",
    "PaletteMemberParam",
    "Progress",
    "ProgressCallback",
    "RateLimited",
    "RemixParams",
    "Result",
    "ServerError",
    "Status",
]
