"""Fetch an image URL without letting it reach places it must not (SSRF-safe).

How each request is kept safe:
1. Only `http`/`https` URLs with a host and a valid port are fetched.
2. Before every hop (the first request and each redirect) the host is resolved once and every
   address is checked by `addresses.check_host`.
3. DNS rebinding is defeated by *pinning*: the request is sent to the checked IP itself (the
   URL's host is replaced by the IP), with the original `Host` header and, for https, the
   original name as TLS SNI and for certificate verification (httpcore's `sni_hostname`
   request extension). No second DNS lookup happens between the check and the connect.
4. Redirects are followed by hand (at most `max_redirects`), each hop checked as in 2.
5. Proxies and `.netrc` from the environment are ignored (`trust_env=False`): a proxy would
   do its own DNS and defeat the pinning.
6. The body is streamed and the download stops as soon as it passes `max_bytes`; a
   `Content-Length` above it is refused before reading. Compressed transfer encodings are
   not requested (`Accept-Encoding: identity`), so the byte cap is the memory cap.
7. `timeout` bounds the whole fetch (all hops and the body), not just each socket read, so a
   server that trickles bytes cannot hold a worker.
"""

from __future__ import annotations

import ssl
import time

import httpx

from openremix import __version__
from openremix.contract.errors import InputImageError, UnsafeURL
from openremix.media.addresses import Resolver, check_host, normalize_host

USER_AGENT = f"openremix/{__version__}"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_MIB = 1024 * 1024


def format_size(n_bytes: int) -> str:
    """A byte count in words for error messages: 10485760 -> "10 MB" (1 MB = 2**20 bytes)."""
    if n_bytes >= _MIB:
        mib = n_bytes / _MIB
        return f"{mib:.0f} MB" if mib == int(mib) else f"{mib:.1f} MB"
    return f"{n_bytes} bytes"


def display_url(url: str | httpx.URL, limit: int = 200) -> str:
    """The URL as shown in error messages: no user:password, at most `limit` characters."""
    text = str(url)
    try:
        parsed = httpx.URL(text)
        if parsed.userinfo:
            text = str(parsed.copy_with(username=None, password=None))
    except (httpx.InvalidURL, TypeError, ValueError):
        pass
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_http_url(url: str, *, field: str) -> httpx.URL:
    """Parse `url`, requiring http(s), a host and a valid port; raise `InputImageError`."""
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InputImageError(field, f"is not a valid URL: {display_url(url)}") from exc
    if parsed.scheme not in ("http", "https"):
        scheme = parsed.scheme or "(none)"
        raise UnsafeURL(field, f"URL scheme {scheme!r} is not supported; use http or https")
    if not normalize_host(parsed.raw_host.decode("ascii", "replace")):
        raise InputImageError(field, f"URL has no host: {display_url(url)}")
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise InputImageError(field, f"URL has an invalid port: {display_url(url)}")
    return parsed


def pinning_client(headers: dict[str, str], tls: ssl.SSLContext | None = None) -> httpx.Client:
    """A client for pinned requests: no proxies or `.netrc` from the environment (a proxy would
    resolve names itself), no redirects followed. Use a fresh one per host: no pooled
    connection (and its TLS identity) is then reused for another name sharing an address.
    `tls` reuses a verifying context (building one costs ~15 ms); None builds the default."""
    if tls is None:
        return httpx.Client(trust_env=False, follow_redirects=False, headers=headers)
    return httpx.Client(trust_env=False, follow_redirects=False, headers=headers, verify=tls)


def pinned_request(
    client: httpx.Client,
    url: httpx.URL,
    ip: str,
    timeout: float,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """A request for `url` that connects to `ip` but presents the URL's own host name."""
    host = url.raw_host.decode("ascii")
    host_header = url.netloc.decode("ascii").rpartition("@")[2]
    extensions: dict[str, object] = {
        "timeout": {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}
    }
    if url.scheme == "https":
        extensions["sni_hostname"] = normalize_host(host)
    return client.build_request(
        method,
        url.copy_with(host=ip),
        headers={**(headers or {}), "Host": host_header},
        content=content,
        extensions=extensions,
    )


def send_pinned(
    client: httpx.Client,
    url: httpx.URL,
    ips: list[str],
    timeout: float,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """Send to the first checked address that accepts a connection (streamed: the caller reads
    and closes). Moving on after a refused connection is safe for any method: nothing was sent."""
    last_error: httpx.ConnectError | None = None
    for ip in ips:
        request = pinned_request(
            client, url, ip, timeout, method=method, headers=headers, content=content
        )
        try:
            return client.send(request, stream=True)
        except httpx.ConnectError as exc:
            last_error = exc
    assert last_error is not None
    raise last_error


def _read_body(
    response: httpx.Response,
    *,
    field: str,
    shown: str,
    max_bytes: int,
    deadline: float,
) -> bytes:
    too_large = InputImageError(field, f"image is larger than {format_size(max_bytes)}")
    length = response.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > max_bytes:
        raise too_large
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise InputImageError(
            field, f"could not fetch {shown}: server sent {encoding}-encoded content"
        )
    body = bytearray()
    for chunk in response.iter_raw():  # no chunk_size: it would buffer past the deadline
        body += chunk
        if len(body) > max_bytes:
            raise too_large
        if time.monotonic() > deadline:
            # Raised as httpx's own timeout so that fetch_url words it in one place.
            raise httpx.ReadTimeout("download outlived the deadline")
    return bytes(body)


def fetch_url(
    url: str,
    *,
    field: str,
    max_bytes: int,
    timeout: float,
    allow_private: bool,
    max_redirects: int = 5,
    resolver: Resolver | None = None,
) -> bytes:
    """Download `url` and return its body, following at most `max_redirects` redirects.

    Raises `UnsafeURL` when any hop points at a refused address (checked before connecting),
    and `InputImageError` for everything else: HTTP errors ("could not fetch URL: HTTP 404"),
    timeouts, connection failures, a body over `max_bytes`. `resolver` replaces DNS (tests).
    DNS resolution itself is not bounded by `timeout` (getaddrinfo has no timeout).
    """
    shown = display_url(url)
    timed_out = f"could not fetch {shown}: timed out after {timeout:g}s"
    deadline = time.monotonic() + timeout
    current = parse_http_url(url, field=field)
    for _hop in range(max_redirects + 1):
        host = current.raw_host.decode("ascii")
        ips = check_host(host, allow_private=allow_private, resolver=resolver, field=field)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise InputImageError(field, timed_out)
        try:
            outcome = _fetch_one_hop(
                current, ips, field=field, shown=shown, max_bytes=max_bytes, deadline=deadline
            )
        except httpx.TimeoutException as exc:
            raise InputImageError(field, timed_out) from exc
        except httpx.ConnectError as exc:
            message = f"could not fetch {shown}: connection failed ({exc})"
            raise InputImageError(field, message) from exc
        except httpx.HTTPError as exc:
            message = f"could not fetch {shown}: {type(exc).__name__}: {exc}"
            raise InputImageError(field, message) from exc
        if isinstance(outcome, bytes):
            return outcome
        current = outcome
    raise InputImageError(field, f"could not fetch {shown}: more than {max_redirects} redirects")


def _fetch_one_hop(
    url: httpx.URL, ips: list[str], *, field: str, shown: str, max_bytes: int, deadline: float
) -> bytes | httpx.URL:
    """GET `url` from one of its checked `ips`: the body, or the URL a redirect points to."""
    with pinning_client({"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}) as client:
        response = send_pinned(client, url, ips, deadline - time.monotonic())
        try:
            status = response.status_code
            if status in REDIRECT_STATUSES:
                location = response.headers.get("location")
                if not location:
                    message = f"could not fetch {shown}: HTTP {status} redirect without a Location"
                    raise InputImageError(field, message)
                return parse_http_url(str(url.join(location)), field=field)
            if not 200 <= status < 400:
                raise InputImageError(field, f"could not fetch {shown}: HTTP {status}")
            return _read_body(
                response, field=field, shown=shown, max_bytes=max_bytes, deadline=deadline
            )
        finally:
            response.close()
