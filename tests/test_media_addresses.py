"""The SSRF address checker, tested on literal addresses and fake resolvers only (no traffic)."""

from __future__ import annotations

import ipaddress

import pytest

from openremix.contract.errors import InputImageError, UnsafeURL
from openremix.media.addresses import (
    check_host,
    is_forbidden_address,
    is_metadata_address,
    literal_address,
    precheck_host,
    resolve_host,
)

FORBIDDEN = [
    "127.0.0.1",
    "127.255.255.254",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.0.1",
    "0.0.0.0",
    "0.1.2.3",
    "100.64.0.1",
    "100.127.255.255",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.1",
    "198.18.0.1",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fd00:ec2::254",
    "fe80::1",
    "fe80::1%eth0",
    "[fe80::1]",
    "ff02::1",
    "fec0::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:db8::1",
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "100::1",
    "not an address",
]

ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "93.184.216.34",
    "172.15.255.255",
    "172.32.0.1",
    "100.63.255.255",
    "100.128.0.1",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of 8.8.8.8
    "2002:808:808::1",  # 6to4 of 8.8.8.8
]


@pytest.mark.parametrize("ip", FORBIDDEN)
def test_non_public_addresses_are_forbidden(ip: str) -> None:
    assert is_forbidden_address(ip)


@pytest.mark.parametrize("ip", ALLOWED)
def test_public_addresses_are_allowed(ip: str) -> None:
    assert not is_forbidden_address(ip)


def test_address_objects_are_accepted() -> None:
    assert is_forbidden_address(ipaddress.ip_address("10.1.2.3"))
    assert not is_forbidden_address(ipaddress.ip_address("8.8.4.4"))


@pytest.mark.parametrize(
    "ip", ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254", "100.100.100.200"]
)
def test_metadata_addresses_are_recognised_in_every_spelling(ip: str) -> None:
    assert is_metadata_address(ip)


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("2130706433", "127.0.0.1"),
        ("0x7f.1", "127.0.0.1"),
        ("017700000001", "127.0.0.1"),
        ("127.1", "127.0.0.1"),
        ("0177.0.0.1", "127.0.0.1"),
        ("0xa9fea9fe", "169.254.169.254"),
        ("[::1]", "::1"),
        ("example.com", None),
        ("deadbeef.example", None),
    ],
)
def test_numeric_ipv4_spellings_are_read_as_addresses(host: str, expected: str | None) -> None:
    found = literal_address(host)
    assert (str(found) if found else None) == expected


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001", "127.1"])
def test_numeric_spellings_of_loopback_are_refused(host: str) -> None:
    with pytest.raises(UnsafeURL):
        check_host(host, allow_private=False, resolver=lambda name: ["8.8.8.8"])


@pytest.mark.parametrize("host", ["2130706433", "0x7f.1", "017700000001"])
def test_system_resolver_agrees_numeric_spellings_are_loopback(host: str) -> None:
    # Resolution only (getaddrinfo parses these locally); nothing connects.
    assert resolve_host(host) == ["127.0.0.1"]


def fake_resolver(table: dict[str, list[str]]):
    def resolve(name: str) -> list[str]:
        if name not in table:
            raise OSError(f"no such host {name}")
        return table[name]

    return resolve


def test_public_host_resolves_to_its_addresses() -> None:
    resolver = fake_resolver({"images.example.test": ["93.184.216.34", "2606:2800::1"]})
    assert check_host("images.example.test", allow_private=False, resolver=resolver) == [
        "93.184.216.34",
        "2606:2800::1",
    ]


def test_host_with_any_private_address_is_refused() -> None:
    resolver = fake_resolver({"mixed.example.test": ["93.184.216.34", "10.0.0.7"]})
    with pytest.raises(UnsafeURL) as caught:
        check_host("mixed.example.test", allow_private=False, resolver=resolver, field="image")
    assert caught.value.field == "image"
    assert "10.0.0.7" not in caught.value.message  # internal DNS answers are not echoed


def test_host_resolving_to_mapped_metadata_address_is_refused() -> None:
    resolver = fake_resolver({"sneaky.example.test": ["::ffff:169.254.169.254"]})
    with pytest.raises(UnsafeURL, match="metadata"):
        check_host("sneaky.example.test", allow_private=True, resolver=resolver)


def test_allow_private_permits_private_but_never_metadata() -> None:
    resolver = fake_resolver({"nas.lan.test": ["192.168.1.20"], "md.test": ["169.254.169.254"]})
    assert check_host("nas.lan.test", allow_private=True, resolver=resolver) == ["192.168.1.20"]
    assert check_host("127.0.0.1", allow_private=True) == ["127.0.0.1"]
    with pytest.raises(UnsafeURL):
        check_host("md.test", allow_private=True, resolver=resolver)
    with pytest.raises(UnsafeURL):
        check_host("169.254.169.254", allow_private=True)


@pytest.mark.parametrize(
    "host",
    ["localhost", "LOCALHOST.", "app.localhost", "metadata.google.internal", "metadata"],
)
def test_blocked_names_are_refused_without_resolving(host: str) -> None:
    def must_not_resolve(name: str) -> list[str]:
        raise AssertionError("resolver called")

    with pytest.raises(UnsafeURL):
        check_host(host, allow_private=False, resolver=must_not_resolve)


def test_metadata_name_is_refused_even_when_private_is_allowed() -> None:
    with pytest.raises(UnsafeURL):
        precheck_host("metadata.google.internal", allow_private=True)
    precheck_host("localhost", allow_private=True)  # plain loopback is allowed then


def test_literal_ip_hosts_skip_the_resolver() -> None:
    def must_not_resolve(name: str) -> list[str]:
        raise AssertionError("resolver called")

    assert check_host("8.8.8.8", allow_private=False, resolver=must_not_resolve) == ["8.8.8.8"]
    with pytest.raises(UnsafeURL):
        check_host("[::ffff:127.0.0.1]", allow_private=False, resolver=must_not_resolve)


def test_unresolvable_host_is_an_input_error_not_unsafe() -> None:
    with pytest.raises(InputImageError) as caught:
        check_host("nowhere.test", allow_private=False, resolver=fake_resolver({}))
    assert not isinstance(caught.value, UnsafeURL)
    assert "could not resolve" in caught.value.message


def test_empty_resolution_is_refused() -> None:
    with pytest.raises(InputImageError):
        check_host("empty.test", allow_private=False, resolver=lambda name: [])
