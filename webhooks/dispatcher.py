"""`billing webhooks`: deliver every output to the endpoints that subscribe to it.

Any number of replicas share the work through one Redis consumer group per output
stream. A replica reads new entries (XREADGROUP) and entries a dead replica left
unacknowledged (XAUTOCLAIM, idle past the lease); for each it records one delivery
per subscribed endpoint, leased to itself (webhooks.store), and only then
acknowledges the entry: from there the delivery is in Redis, due again when the
lease runs out if this replica dies mid-request. Retries follow the schedule
setting; when it is spent the delivery is `failed` (listed, retryable by hand).

Each request is signed as Standard Webhooks says, with the `standardwebhooks`
package: `webhook-id` is the output's `output_id`, so receivers drop repeats. It
goes to the address checked just before (webhooks.sender). Requests in flight per
endpoint are bounded, so a slow receiver delays only its own deliveries.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from typing import Any

import redis.asyncio as aioredis

from billing.keys import WEBHOOK_GROUP
from billing.redis_runtime import async_client
from billing.settings import Settings
from billing.stream_ids import ts_of
from webhooks.sender import SignedSender
from webhooks.store import Outcome, WebhookStore, delivery_id

log = logging.getLogger("billing.webhooks")
READ_COUNT = 200
MAX_IN_FLIGHT = 512  # deliveries held by this replica: waiting for their endpoint, or sent
QUEUE_PER_CONNECTION = 32  # held per endpoint, per request it may have in flight
DEFER_MS = 1000
REDIS_CONNECTIONS = 16
TAKE_OVER_EVERY_S = 1.0  # XAUTOCLAIM (entries idle past the lease) need not be asked often
DUE_EVERY_S = 0.05


class Retired(Exception):
    """Webhooks were retired and no endpoint exists (`Dispatcher._unless_retired`)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Dispatcher:
    def __init__(
        self, settings: Settings, redis: aioredis.Redis | None = None, consumer: str | None = None
    ) -> None:
        self.settings = settings
        self.keys = settings.keys
        self.r = redis or self._connect(settings)
        self.store = WebhookStore(self.r, self.keys)
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.schedule = settings.webhook_schedule
        self.lease_ms = settings.webhook_lease_ms
        self.log_ms = settings.webhook_log_retention_ms
        self.sender = SignedSender(settings)
        self.outcomes: list[Outcome] = []  # finished, not yet recorded
        self.recorder: asyncio.Task[None] | None = None
        self.endpoints: dict[str, dict[str, Any]] = {}
        self._endpoints_at = 0.0
        self.held: dict[str, int] = {}  # endpoint -> deliveries held (waiting or sent)
        self.slots: dict[str, asyncio.Semaphore] = {}  # endpoint -> requests in flight
        self.tasks: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()

    # --- the loop -------------------------------------------------------------------
    async def run(self) -> None:
        streams = list(self.keys.output_streams)
        await self._unless_retired()
        await self._ensure_groups(streams)
        taken_over = due_at = 0.0
        while not self.stopping.is_set():
            try:
                await self._refresh_endpoints()
                if time.monotonic() - taken_over >= TAKE_OVER_EVERY_S:
                    await self._take_over(streams)
                    taken_over = time.monotonic()
                await self._read(streams)
                if time.monotonic() - due_at >= DUE_EVERY_S:
                    await self._due()
                    due_at = time.monotonic()
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                log.warning("redis unavailable (%s); retrying", type(exc).__name__)
                await asyncio.sleep(0.5)
                await self._ensure_groups(streams, quiet=True)
            except aioredis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                if await self.r.exists(self.keys.webhooks_retired):
                    log.warning("webhooks were retired (billing webhooks --retire): stopping")
                    self.stopping.set()
                else:  # deleted by hand: made again, from what the streams keep
                    await self._ensure_groups(streams)
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.recorder is not None:
            await self.recorder
        await self.sender.aclose()

    async def _unless_retired(self) -> None:
        """After `billing webhooks --retire` a dispatcher runs again only once an
        endpoint exists (it then clears the mark): a replica restarted by its
        supervisor would otherwise make the groups again and hold the streams."""
        if not await self.r.exists(self.keys.webhooks_retired):
            return
        if not await self.store.endpoints():
            raise Retired(
                "webhooks were retired (billing webhooks --retire) and no endpoint exists: "
                "create one (POST /v1/webhook-endpoints), then start the dispatchers"
            )
        await self.r.delete(self.keys.webhooks_retired)

    async def _ensure_groups(self, streams: list[str], quiet: bool = False) -> None:
        for stream in streams:
            try:
                # From the start of what is kept: an endpoint gets only outputs written
                # after it was created, and a later endpoint filters by that time.
                await self.r.xgroup_create(stream, WEBHOOK_GROUP, id="0", mkstream=True)
            except aioredis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
                if not quiet:
                    raise

    async def _refresh_endpoints(self) -> None:
        if time.monotonic() - self._endpoints_at >= 0.5:
            found = await self.store.endpoints(with_secret=True)
            self.endpoints = {e["id"]: e for e in found}
            self._endpoints_at = time.monotonic()

    async def _take_over(self, streams: list[str]) -> None:
        """Entries a dead replica read but never acknowledged."""
        for stream in streams:
            reply: Any = await self.r.xautoclaim(
                stream,
                WEBHOOK_GROUP,
                self.consumer,
                min_idle_time=self.lease_ms,
                start_id="0-0",
                count=READ_COUNT,
            )
            if reply[1]:
                await self._fan_out(stream, reply[1])

    @staticmethod
    def _connect(settings: Settings) -> aioredis.Redis:
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "max_connections": REDIS_CONNECTIONS,
        }
        if settings.redis_cluster:  # a pool per node, each of this size
            return async_client(settings.redis_url, cluster=True, **options)
        # A blocking pool: hundreds of deliveries in flight wait for one of a few
        # connections, rather than failing with "too many connections" (measured: the
        # default pool's refusals left deliveries to their lease, 30 s later).
        pool = aioredis.BlockingConnectionPool.from_url(settings.redis_url, timeout=30, **options)
        return aioredis.Redis(connection_pool=pool)

    async def _read(self, streams: list[str]) -> None:
        if len(self.tasks) >= MAX_IN_FLIGHT:
            await asyncio.sleep(0.05)
            return
        # Read no more than this replica can hold: the rest waits in the streams, where
        # any replica may take it.
        count = max(1, min(READ_COUNT, MAX_IN_FLIGHT - len(self.tasks)))
        reply: Any = await self.r.xreadgroup(
            WEBHOOK_GROUP, self.consumer, dict.fromkeys(streams, ">"), count=count, block=100
        )
        for stream, entries in reply or []:
            await self._fan_out(stream, entries)

    async def _fan_out(self, stream: str, entries: list[Any]) -> None:
        planned: list[tuple[str, str, str, str, str]] = []
        for entry_id, fields in entries:
            if not fields or "data" not in fields:
                continue  # trimmed away before it was claimed
            data = fields["data"]
            out_type = json.loads(data)["type"]
            written = ts_of(entry_id)
            for ep in self.endpoints.values():
                if out_type in ep["types"] and ep["created_at"] <= written:
                    planned.append(
                        (
                            delivery_id(ep["id"], fields["output_id"]),
                            ep["id"],
                            fields["output_id"],
                            out_type,
                            data,
                        )
                    )
        created: list[str] = []
        token = ""
        if planned:
            created, token = await self.store.create(
                now_ms(), self.lease_ms, self.log_ms, len(self.schedule), planned
            )
        # Recorded (or recorded before, by a replica that died): done with the entries.
        await self.r.xack(stream, WEBHOOK_GROUP, *[entry_id for entry_id, _ in entries])
        by_id = {p[0]: p for p in planned}
        for ident in created:
            _, endpoint, output_id, _, data = by_id[ident]
            self._spawn(ident, token, endpoint, output_id, data)

    async def _due(self) -> None:
        room = MAX_IN_FLIGHT - len(self.tasks)
        if room <= 0:
            return
        for ident, token, endpoint, output_id, data in await self.store.claim_due(
            now_ms(), self.lease_ms, min(room, 200)
        ):
            self._spawn(ident, token, endpoint, output_id, data)

    def _spawn(self, ident: str, token: str, endpoint: str, output_id: str, data: str) -> None:
        limit = self.settings.webhook_concurrency_per_endpoint
        if self.held.get(endpoint, 0) >= limit * QUEUE_PER_CONNECTION:
            # Its receiver is behind: back to the due set for a second, no attempt
            # counted, so that a slow receiver holds only its own share of this replica.
            self._outcome(Outcome(ident, token, "defer", endpoint, None, now_ms() + DEFER_MS))
            return
        self.held[endpoint] = self.held.get(endpoint, 0) + 1
        task = asyncio.create_task(self._deliver(ident, token, endpoint, output_id, data))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- one attempt ----------------------------------------------------------------
    async def _deliver(
        self, ident: str, token: str, endpoint_id: str, output_id: str, data: str
    ) -> None:
        try:
            slots = self.slots.setdefault(
                endpoint_id, asyncio.Semaphore(self.settings.webhook_concurrency_per_endpoint)
            )
            async with slots:
                ep = self.endpoints.get(endpoint_id) or await self.store.endpoint(endpoint_id, True)
                started = now_ms()
                status: int | None = None
                error: str | None = "endpoint deleted"
                if ep is not None:
                    status, error = await self.sender.post(ep, output_id, data)
            attempt = {
                "at": started,
                "status_code": status,
                "latency_ms": now_ms() - started,
                "error": error,
            }
            ok = status is not None and 200 <= status < 300
            outcome = "succeeded" if ok else ("failed" if ep is None else "retry")
            self._outcome(Outcome(ident, token, outcome, endpoint_id, attempt))
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
            # Its lease runs out and the delivery is due again: nothing is lost.
            log.warning("delivery %s not attempted (%s)", ident, type(exc).__name__)
        finally:
            self.held[endpoint_id] -= 1

    # --- outcomes, recorded in batches ----------------------------------------------
    def _outcome(self, outcome: Outcome) -> None:
        """Queue an outcome; one recorder at a time writes all that are queued, so the
        outcomes that finish while a write is under way go together in the next."""
        self.outcomes.append(outcome)
        if self.recorder is None:
            self.recorder = asyncio.create_task(self._record())

    async def _record(self) -> None:
        try:
            while self.outcomes:
                batch, self.outcomes = self.outcomes[:500], self.outcomes[500:]
                try:
                    final = await self.store.finish(now_ms(), self.log_ms, self.schedule, batch)
                except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as exc:
                    # Their leases run out and they are due again: nothing is lost.
                    log.warning("%d outcomes not recorded (%s)", len(batch), type(exc).__name__)
                    continue
                for o, result in zip(batch, final, strict=True):
                    if result not in ("succeeded", "defer") and o.attempt is not None:
                        log.info(
                            "delivery %s to %s: %s (%s)",
                            o.ident,
                            o.endpoint_id,
                            result,
                            o.attempt["error"],
                        )
        finally:
            self.recorder = None


async def serve(settings: Settings) -> None:
    dispatcher = Dispatcher(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, dispatcher.stopping.set)
    await dispatcher.run()
