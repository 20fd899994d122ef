"""One signed request to an endpoint, to an address checked just before.

Each request is signed as Standard Webhooks says (the `standardwebhooks` package),
and goes to the address checked just before (webhooks.addresses), with the URL's
host in the Host header and in TLS's SNI and certificate check.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from standardwebhooks.webhooks import Webhook

from billing.settings import Settings
from webhooks.addresses import RefusedAddress, Target, check_url, system_resolver
from webhooks.http_client import BadResponse, HttpClient

# A checked address is reused this long (each delivery still goes to an address that
# was checked: a rebinding name is caught at most this late, never connected to).
CHECKED_FOR_S = 1.0


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SignedSender:
    def __init__(self, settings: Settings) -> None:
        self.allow_private = settings.webhook_allow_private
        self.http = HttpClient(settings.webhook_timeout_ms / 1000)
        self.signers: dict[str, tuple[str, Webhook]] = {}  # endpoint -> (secret, signer)
        self.checked: dict[str, tuple[float, Target]] = {}  # url -> (checked at, target)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def post(
        self, ep: dict[str, Any], output_id: str, data: str
    ) -> tuple[int | None, str | None]:
        url = ep["url"]
        try:
            target = await self._check(url)
        except RefusedAddress as exc:
            return None, f"refused: {exc}"
        parts = urlsplit(url)
        signed_at = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": output_id,
            "webhook-timestamp": str(int(signed_at.timestamp())),
            "webhook-signature": self._signer(ep).sign(output_id, signed_at, data),
            "user-agent": "billing-webhooks/1",
        }
        path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
        try:
            status = await self.http.post(
                target, parts.netloc.rpartition("@")[2], path, headers, data.encode()
            )
        except TimeoutError:
            return None, "timeout"
        except (OSError, BadResponse) as exc:
            return None, f"{type(exc).__name__}: {exc}"[:300]
        return status, None if 200 <= status < 300 else f"HTTP {status}"

    async def _check(self, url: str) -> Target:
        """The address to send to, checked at most CHECKED_FOR_S ago."""
        now = time.monotonic()
        cached = self.checked.get(url)
        if cached is not None and now - cached[0] < CHECKED_FOR_S:
            return cached[1]
        allow = self.allow_private
        if _is_ip(urlsplit(url).hostname or ""):  # nothing to resolve: no thread needed
            target = check_url(url, allow, system_resolver)
        else:
            target = await asyncio.get_running_loop().run_in_executor(
                None, check_url, url, allow, system_resolver
            )
        if len(self.checked) > 10_000:
            self.checked.clear()
        self.checked[url] = (now, target)
        return target

    def _signer(self, ep: dict[str, Any]) -> Webhook:
        known = self.signers.get(ep["id"])
        if known is None or known[0] != ep["secret"]:
            known = self.signers[ep["id"]] = (ep["secret"], Webhook(ep["secret"]))
        return known[1]
