"""The public scan page's guard: who may name the scanner, and how often anyone
may write a scan.

- The scanner header (`BILLING_SCANNER_HEADER`) is honoured only on requests from
  a trusted proxy (`BILLING_TRUSTED_PROXIES`, CIDRs): the proxy authenticates the
  user and sets it. From anyone else it is ignored (the scan is anonymous), so no
  one can plant a last-touch scan for a chosen buyer.
- Scans are rate-limited per share and per client address, with `limits` (Redis
  storage, fixed windows, shared by every API replica). Over a limit the visitor
  still gets the redirect, but no scan is written; refusals are counted for
  /metrics.
"""

from __future__ import annotations

import re
from ipaddress import ip_address, ip_network
from urllib.parse import urlsplit, urlunsplit

from fastapi import Request
from limits import parse
from limits.aio.storage import RedisClusterStorage, RedisStorage
from limits.aio.strategies import FixedWindowRateLimiter

from billing.settings import Settings

_USABLE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ScanGuard:
    def __init__(self, settings: Settings) -> None:
        self.header = settings.scanner_header
        self.trusted = [
            ip_network(c.strip(), strict=False)
            for c in settings.trusted_proxies.split(",")
            if c.strip()
        ]
        storage_class: type[RedisStorage | RedisClusterStorage] = RedisStorage
        uri = "async+" + settings.redis_url
        if settings.redis_cluster:  # the same counters, on the cluster's slots
            storage_class = RedisClusterStorage
            node = urlsplit(settings.redis_url)._replace(scheme="async+redis+cluster", path="")
            uri = urlunsplit(node)
        storage = storage_class(uri, implementation="redispy", key_prefix=settings.keys.rate_limits)
        self.limiter = FixedWindowRateLimiter(storage)
        self.per_share = parse(settings.scan_rate_per_share)
        self.per_client = parse(settings.scan_rate_per_client)

    def _trusted(self, host: str | None) -> bool:
        try:
            address = ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    def client_address(self, request: Request) -> str:
        """The visitor's address: the peer, or what a trusted proxy says it is."""
        peer = request.client.host if request.client else ""
        if self._trusted(peer):
            forwarded = request.headers.get("x-forwarded-for", "").split(",")[0].strip()
            if forwarded:
                return forwarded
        return peer

    def scanner(self, request: Request) -> str | None:
        """The scanner id, only from a trusted proxy; an unusable value is anonymous."""
        if not self._trusted(request.client.host if request.client else None):
            return None
        value = request.headers.get(self.header) or None
        return value if value is not None and _USABLE_ID.fullmatch(value) else None

    async def refusal(self, share_id: str, client: str) -> str | None:
        """None if this scan may be written, else which limit refused it."""
        if not await self.limiter.hit(self.per_share, "share", share_id):
            return "per_share"
        if not await self.limiter.hit(self.per_client, "client", client):
            return "per_client"
        return None
