"""`billing webhooks --retire`: stop holding the output streams for the dispatchers.

The sink trims an output stream no further than the dispatchers' consumer group has
taken (flows.sink_script), so a group whose dispatchers are gone for good would keep
the streams growing. Retiring deletes that group on every output stream, and the
streams are trimmed by time again (R and the margin). It refuses while an endpoint
exists: its outputs would never be delivered. It also marks webhooks retired
(`Keys.webhooks_retired`), so that no dispatcher makes the groups again, which would
hold the streams once more: one still running stops when it finds its group gone, and
one started later refuses to run until an endpoint exists (webhooks.dispatcher)."""

from __future__ import annotations

from billing.keys import WEBHOOK_GROUP
from billing.redis_runtime import async_client
from billing.settings import Settings
from webhooks.store import WebhookStore


class EndpointsRemain(Exception):
    pass


async def retire(settings: Settings) -> int:
    """The groups deleted (one per output stream that had one). Raises EndpointsRemain
    while any endpoint exists."""
    r = async_client(settings.redis_url, cluster=settings.redis_cluster, decode_responses=True)
    try:
        found = await WebhookStore(r, settings.keys).endpoints()
        if found:
            ids = ", ".join(e["id"] for e in found[:5]) + (", …" if len(found) > 5 else "")
            raise EndpointsRemain(
                f"{len(found)} webhook endpoint(s) still exist ({ids}): delete them first "
                "(DELETE /v1/webhook-endpoints/{id}), or their outputs would never be delivered"
            )
        await r.set(settings.keys.webhooks_retired, 1)  # before: no group is made again
        gone = 0
        for stream in settings.keys.output_streams:
            if await r.exists(stream):
                gone += int(await r.xgroup_destroy(stream, WEBHOOK_GROUP))
        return gone
    finally:
        await r.aclose()
