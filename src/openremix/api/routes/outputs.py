"""Output images at their unguessable URLs (`/outputs/{key}`): no API key needed."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from openremix.api.errors import ApiError
from openremix.api.state import app_state

router = APIRouter()

_CONTENT_TYPES = {"jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png",
                  "webp": "image/webp"}


@router.get("/outputs/{key}", summary="An output image (no key needed: the URL is unguessable)")
async def output_file(key: str, request: Request) -> Response:
    state = app_state(request)
    extension = key.rsplit(".", 1)[-1].lower() if "." in key else ""
    media_type = _CONTENT_TYPES.get(extension)
    if media_type is None:
        raise ApiError(404, "Output not found")
    try:
        path = state.storage.path_for(key)
    except ValueError:
        raise ApiError(404, "Output not found") from None
    headers = {"Cache-Control": "private, max-age=3600"}
    if path is not None:
        if not path.is_file():
            raise ApiError(404, "Output not found")
        return FileResponse(path, media_type=media_type, headers=headers)
    data = await run_in_threadpool(state.storage.get, key)
    if data is None:
        raise ApiError(404, "Output not found")
    return Response(data, media_type=media_type, headers=headers)
