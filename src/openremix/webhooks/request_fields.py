"""The webhook fields of a submit body (`webhook_url`, `webhook_events`), checked at submit."""

from __future__ import annotations

import json
from typing import Any

from openremix.contract.errors import InputImageError, InvalidRequest
from openremix.jobs.outbox import EVENTS
from openremix.media.addresses import precheck_host
from openremix.media.fetch import parse_http_url

MAX_URL_LENGTH = 2048
_ALL_EVENTS = list(EVENTS.values())


def parse_webhook_fields(
    body: dict[str, Any], *, allow_private: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Split `webhook_url`/`webhook_events` off a submit body: (the rest, {"url", "events"} or
    None). Checks the URL without DNS (syntax, blocked names, forbidden IP literals); raises
    `InvalidRequest` naming the field."""
    rest = dict(body)
    url = rest.pop("webhook_url", None)
    events = _parse_events(rest.pop("webhook_events", None))
    if url is None or url == "":
        if events is not None:
            raise InvalidRequest("webhook_events", "needs a webhook_url")
        return rest, None
    if not isinstance(url, str):
        raise InvalidRequest("webhook_url", "must be a string: an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest("webhook_url", f"at most {MAX_URL_LENGTH} characters")
    try:
        parsed = parse_http_url(url, field="webhook_url")
        precheck_host(parsed.raw_host.decode("ascii"), allow_private=allow_private,
                      field="webhook_url")
    except InputImageError as exc:
        raise InvalidRequest("webhook_url", exc.rule) from None
    return rest, {"url": url.strip(), "events": events or _ALL_EVENTS}


def _parse_events(value: Any) -> list[str] | None:
    """`webhook_events` as canonical event names; None when not given (null, [] or "")."""
    if isinstance(value, str):  # a multipart form field: JSON or comma-separated
        text = value.strip()
        try:
            value = json.loads(text) if text.startswith("[") else text.split(",")
        except json.JSONDecodeError:
            raise InvalidRequest("webhook_events", "is not a valid JSON list") from None
        value = [v.strip() if isinstance(v, str) else v for v in value if v != ""]
    if value is None or value == []:
        return None
    if not isinstance(value, list):
        raise InvalidRequest("webhook_events", 'must be a list of "completed" and/or "failed"')
    wanted: set[str] = set()
    for item in value:
        if not isinstance(item, str) or item.lower() not in _ALL_EVENTS:
            raise InvalidRequest("webhook_events",
                                 f'each must be "completed" or "failed", got {item!r}')
        wanted.add(item.lower())
    return [event for event in _ALL_EVENTS if event in wanted]
