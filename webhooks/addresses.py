"""Where a webhook may be sent: http(s) URLs whose every address is public.

Checked when an endpoint is saved, and again at each delivery on the addresses
the name resolves to then (a name that resolved to a public address when saved
may later resolve to 127.0.0.1: DNS rebinding). The delivery then connects to
the very address that was checked, never resolving the name a second time.
`BILLING_WEBHOOK_ALLOW_PRIVATE=true` lifts the address check (tests, demos, a
receiver on the same private network).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]


class RefusedAddress(ValueError):
    """Not an http(s) URL, or a name that resolves to a non-public address."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise RefusedAddress(f"{host!r} does not resolve") from exc
    return sorted({str(info[4][0]) for info in infos})


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    address: str  # the checked address to connect to


def check_url(url: str, allow_private: bool, resolve: Resolver = system_resolver) -> Target:
    """The address to send to, or RefusedAddress saying why not."""
    try:
        parts = urlsplit(url)
        parts.hostname  # noqa: B018 (an invalid bracketed host raises only when asked)
    except ValueError as exc:
        raise RefusedAddress(f"not a valid URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedAddress("the URL must be http or https, with a host")
    if parts.username or parts.password:
        raise RefusedAddress("the URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise RefusedAddress("the URL's port is not valid") from exc
    host = parts.hostname
    addresses = resolve(host, port)
    if not addresses:
        raise RefusedAddress(f"{host!r} does not resolve")
    if not allow_private:
        bad = [a for a in addresses if not is_public(a)]
        if bad:
            raise RefusedAddress(f"{host!r} resolves to a non-public address ({bad[0]})")
    return Target(parts.scheme, host, port, addresses[0])
