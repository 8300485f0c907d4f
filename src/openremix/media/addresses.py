"""Which network addresses an image URL may point at (the SSRF guard).

Pure logic plus one DNS lookup: `is_forbidden_address` judges one IP, `check_host` judges a
host name by every address it resolves to. Nothing here opens a connection; `fetch` connects
only to addresses this module has approved.

Two tiers:
- *forbidden* (refused unless `allow_private`): anything that is not plain global unicast:
  loopback, private, link-local, unspecified, multicast, reserved, carrier-grade NAT,
  documentation/benchmark ranges, and IPv6 forms that embed such an IPv4 address
  (IPv4-mapped, IPv4-compatible, NAT64, 6to4, Teredo).
- *metadata* (refused always, even with `allow_private`): cloud instance-metadata endpoints
  such as 169.254.169.254 and fd00:ec2::254, and names like `metadata.google.internal`.
  No image is ever served from them, and they hand out cloud credentials.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable

from openremix.contract.errors import InputImageError, UnsafeURL

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]
"""Turns a host name into the IP address strings it resolves to (may raise `OSError`)."""

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Explicit lists rather than `ip.is_global`, whose ranges changed between Python patch releases.
_FORBIDDEN_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    _V4(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches localhost on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, incl. cloud metadata
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # documentation
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, incl. broadcast 255.255.255.255
    )
)

# Only 2000::/3 is global unicast; everything else is refused once embedded IPv4 is handled.
_GLOBAL_UNICAST_V6 = _V6("2000::/3")
_FORBIDDEN_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    _V6(n)
    for n in (
        "2001::/23",  # IETF protocol assignments, incl. Teredo 2001::/32 (tunnels anywhere)
        "2001:db8::/32",  # documentation
        "2002::/16",  # 6to4: allowed only when the embedded IPv4 is allowed (see below)
        "3fff::/20",  # documentation (RFC 9637)
    )
)
_NAT64 = _V6("64:ff9b::/96")
_IPV4_TRANSLATED = _V6("::ffff:0:0:0/96")  # SIIT
_IPV4_COMPATIBLE = _V6("::/96")
_TEREDO = _V6("2001::/32")
_SIXTOFOUR = _V6("2002::/16")

_METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "168.63.129.16",  # Azure WireServer (a public-looking address)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)
_METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata.goog", "metadata"})
_LOOPBACK_HOSTS = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
# Strings the C resolver reads as IPv4 (inet_aton forms: "2130706433", "0x7f.1", "0177.1").
_NUMERIC_HOST = re.compile(r"^[0-9a-fA-FxX.]+$")


def parse_address(ip: str | IPAddress) -> IPAddress:
    """Parse an IP literal (brackets and an IPv6 zone id allowed); raise `ValueError` if not one."""
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    text = ip.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return ipaddress.ip_address(text.split("%", 1)[0])


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, NAT64, SIIT, 6to4, Teredo), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64 or ip in _IPV4_TRANSLATED or ip in _IPV4_COMPATIBLE:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _SIXTOFOUR:
        return ip.sixtofour
    if ip in _TEREDO and ip.teredo is not None:
        return ip.teredo[1]  # the client address
    return None


def is_metadata_address(ip: str | IPAddress) -> bool:
    """True for cloud instance-metadata endpoints, also when embedded in an IPv6 address."""
    try:
        addr = parse_address(ip)
    except ValueError:
        return False
    if addr in _METADATA_ADDRESSES:
        return True
    if isinstance(addr, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(addr)
        return embedded is not None and embedded in _METADATA_ADDRESSES
    return False


def is_forbidden_address(ip: str | IPAddress) -> bool:
    """True unless `ip` is a plain public unicast address that is safe to fetch from.

    Fails closed: a string that is not an IP address is forbidden.
    """
    try:
        addr = parse_address(ip)
    except ValueError:
        return True
    if isinstance(addr, ipaddress.IPv4Address):
        return any(addr in net for net in _FORBIDDEN_V4) or addr in _METADATA_ADDRESSES
    if addr.ipv4_mapped is not None or addr in _NAT64 or addr in _IPV4_TRANSLATED:
        embedded = _embedded_ipv4(addr)
        return embedded is None or is_forbidden_address(embedded)
    if addr in _SIXTOFOUR:
        # 6to4 with a public embedded address is ordinary (if rare) traffic.
        embedded = _embedded_ipv4(addr)
        return embedded is None or is_forbidden_address(embedded)
    if addr not in _GLOBAL_UNICAST_V6:
        return True
    return any(addr in net for net in _FORBIDDEN_V6) or addr in _METADATA_ADDRESSES


def normalize_host(host: str) -> str:
    """Lower-case a host name, drop a trailing dot and IPv6 brackets."""
    text = host.strip().lower().rstrip(".")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    return text


def literal_address(host: str) -> IPAddress | None:
    """The IP address `host` spells without DNS, including inet_aton forms like `0x7f.1`."""
    text = normalize_host(host)
    try:
        return parse_address(text)
    except ValueError:
        pass
    if _NUMERIC_HOST.match(text) and any(c.isdigit() for c in text):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(text))
        except OSError:
            return None
    return None


def _refuse(field: str, host: str, why: str) -> UnsafeURL:
    return UnsafeURL(field, f"refusing to fetch from host {host!r}: {why}")


def precheck_host(host: str, *, allow_private: bool, field: str = "image") -> None:
    """Refuse what can be refused without DNS: blocked names and forbidden IP literals.

    Cheap enough for submit time. Raises `UnsafeURL`.
    """
    name = normalize_host(host)
    if not name:
        raise UnsafeURL(field, "URL has no host")
    if "%" in name or any(c.isspace() for c in name):
        raise _refuse(field, host, "not a valid host name")
    if name in _METADATA_HOSTS or name.endswith(".metadata.google.internal"):
        raise _refuse(field, host, "cloud metadata service")
    if not allow_private and (name in _LOOPBACK_HOSTS or name.endswith(".localhost")):
        raise _refuse(field, host, "loopback address")
    addr = literal_address(name)
    if addr is not None:
        _check_address(addr, host=host, allow_private=allow_private, field=field)


def _check_address(addr: IPAddress, *, host: str, allow_private: bool, field: str) -> None:
    if is_metadata_address(addr):
        raise _refuse(field, host, "cloud metadata service")
    if not allow_private and is_forbidden_address(addr):
        raise _refuse(field, host, "private, loopback, link-local or reserved address")


def resolve_host(host: str) -> list[str]:
    """Every IP address `host` resolves to (getaddrinfo, TCP), in resolver order, no repeats."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    seen: list[str] = []
    for _family, _type, _proto, _canon, sockaddr in infos:
        ip = str(sockaddr[0])
        if ip not in seen:
            seen.append(ip)
    return seen


def check_host(
    host: str,
    *,
    allow_private: bool,
    resolver: Resolver | None = None,
    field: str = "image",
) -> list[str]:
    """Resolve `host` and return its addresses, raising `UnsafeURL` if ANY of them is refused.

    Checking every address (not just the first) means a name that resolves to one public and
    one private address cannot be used to reach the private one. Callers must connect only to
    the returned addresses (see `fetch`), so a second, different DNS answer cannot slip in.
    A name that does not resolve raises `InputImageError`.
    """
    precheck_host(host, allow_private=allow_private, field=field)
    name = normalize_host(host)
    literal = literal_address(name)
    if literal is not None:
        return [str(literal)]
    try:
        addresses = (resolver or resolve_host)(name)
    except (OSError, UnicodeError) as exc:
        raise InputImageError(field, f"could not resolve host {host!r}") from exc
    if not addresses:
        raise InputImageError(field, f"could not resolve host {host!r}")
    checked: list[str] = []
    for ip in addresses:
        try:
            addr = parse_address(ip)
        except ValueError as exc:
            raise _refuse(field, host, "resolver returned a non-address") from exc
        _check_address(addr, host=host, allow_private=allow_private, field=field)
        checked.append(str(addr))
    return checked
