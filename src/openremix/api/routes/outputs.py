"""Output images at their unguessable URLs (`/outputs/{key}`): no API key needed.

Every output is checked against the checksum its key carries before it is served: a damaged
file is a 500 that says so, a missing one a 404 (both counted in `/metrics`), never served as
the image.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.api.openapi import OUTPUT_RESPONSES
from openremix.api.state import app_state
from openremix.media.storage import read_verified, validate_key

router = APIRouter(tags=["outputs"])

_CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                  "webp": "image/webp"}


@router.get("/outputs/{key}", responses=OUTPUT_RESPONSES, response_class=Response,
            summary="An output image (no key needed: the URL is unguessable)")
async def output_file(key: str, request: Request) -> Response:
    state = app_state(request)
    extension = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    media_type = _CONTENT_TYPES.get(extension)
    try:
        validate_key(key)
    except ValueError:
        media_type = None
    if media_type is None:
        raise ApiError(404, "Output not found")
    data = await run_in_threadpool(read_verified, state.storage, key)
    return Response(data, media_type=media_type,
                    headers={"Cache-Control": "private, max-age=3600"})
