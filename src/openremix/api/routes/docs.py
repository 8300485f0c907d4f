"""The API's documentation pages, served entirely from this server: Swagger UI at `/docs` and
ReDoc at `/redoc`, over `/openapi.json`.

FastAPI's own pages load their scripts from a CDN, so they are blank offline. Here the scripts
and styles come from the `fastapi-offline` package (a base dependency, kept for its files only)
and are served under `/docs/assets/`; nothing on either page reaches another host.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response

from openremix.api.errors import ApiError

router = APIRouter(include_in_schema=False)

ASSETS = "/docs/assets"
OPENAPI_URL = "/openapi.json"
TITLE = "openremix API"
_MEDIA_TYPES = {"js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
                "png": "image/png"}
_ASSET_NAMES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")
_SWAGGER_PARAMETERS = {
    "deepLinking": True,
    "persistAuthorization": True,  # the key typed into Authorize survives a reload
    "displayRequestDuration": True,
    "tryItOutEnabled": True,
    "validatorUrl": None,  # Swagger UI's default sends the document's URL to a public validator
}


# ReDoc draws its maker's logo from their CDN (and hides it when it cannot load): point it at
# nothing, so the page never reaches another host.
_REMOTE_LOGO = b'"https://cdn.redoc.ly/redoc/logo-mini.svg"'
# Both pages load only their own files; the inline scripts are FastAPI's page templates, the
# inline styles ReDoc's; ReDoc's search runs in a blob: worker.
_PAGE_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


@cache
def _asset(name: str) -> bytes | None:
    if name not in _ASSET_NAMES:
        return None
    data = (resources.files("fastapi_offline") / "static" / name).read_bytes()
    return data.replace(_REMOTE_LOGO, b'""') if name == "redoc.standalone.js" else data


def _page(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = _PAGE_POLICY
    return page


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    return _page(get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon.png",
        swagger_ui_parameters=_SWAGGER_PARAMETERS,
    ))


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    return _page(get_redoc_html(
        openapi_url=OPENAPI_URL,
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{ASSETS}/redoc.standalone.js",
        redoc_favicon_url=f"{ASSETS}/favicon.png",
        with_google_fonts=False,
    ))


@router.get(f"{ASSETS}/{{name}}")
async def docs_asset(name: str) -> Response:
    data = _asset(name)
    if data is None:
        raise ApiError(404, f"Docs file {name} not found")
    return Response(data, media_type=_MEDIA_TYPES[name.rsplit(".", 1)[-1]],
                    headers={"Cache-Control": "public, max-age=86400",
                             "X-Content-Type-Options": "nosniff"})
