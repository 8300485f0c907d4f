"""The calling key's account: `GET /v1/get-user-credits`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from openremix.api.access import authenticate
from openremix.api.openapi import CREDITS_RESPONSES
from openremix.api.state import app_state

router = APIRouter(tags=["account"])


@router.get("/v1/get-user-credits", responses=CREDITS_RESPONSES,
            summary="Credits left for the calling key")
async def user_credits(request: Request) -> JSONResponse:
    key = await authenticate(request, app_state(request).store)
    return JSONResponse({"credits": key.credits, "free-credits": key.free_credits})
