"""Webhook endpoints and deliveries in Redis: key layout, write plan, read decoding.

Keys (under the deployment's key prefix and `billing:`):
- `webhook:endpoint:<id>` hash (url, types, description, secret, created_at), and
  `webhook:endpoints`, the set of ids (endpoints are few: set up by operators);
- `webhook:delivery:<id>` hash per (endpoint, output): status (`pending`,
  `scheduled`, `succeeded`, `failed`), attempts, retries left, next_at, the lease
  of whoever is sending it, and the output; `webhook:attempts:<id>` its attempts
  (at, status code, latency, error). Both expire `log_ms` after their last change;
- `webhook:log:<endpoint>:<hour>` sorted sets listing an endpoint's deliveries by
  creation time, one per hour (no key grows with all traffic), expiring with them;
- `webhook:due:<second>` sets of deliveries due in that second, and
  `webhook:due:index` the seconds that hold some; `webhook:due:oldest` the oldest
  creation time per second, for the "oldest undelivered" metric.

Every delivery not yet `succeeded` or `failed` is in exactly one due set. Claiming a
due delivery moves it to the set of `now + lease` and stamps a fresh lease token,
so a dispatcher killed mid-request leaves it due again when the lease runs out,
for another dispatcher to take (at least once). A dispatcher that finishes after
its lease was taken over finds another token and changes nothing.

The scripts declare in KEYS every key they can name before they run (a Redis
Cluster routes a call by them); the due sets a delivery's stored times name are
found inside the script. All carry the deployment's hash tag on a cluster
(billing.keys), so they share one slot.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from billing.keys import Keys
from webhooks import store_scripts as scripts

HOUR_MS = 3_600_000
# Attempt latency, counted per bucket (not cumulative; /metrics adds them up).
LATENCY_BUCKETS_MS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)


def latency_bucket(latency_ms: int) -> str:
    return next((str(b) for b in LATENCY_BUCKETS_MS if latency_ms <= b), "+Inf")


def new_secret() -> str:
    """Standard Webhooks' form: `whsec_` and base64 of 24 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def delivery_id(endpoint_id: str, output_id: str) -> str:
    """Stable per (endpoint, output): a re-read output never makes a second delivery."""
    digest = hashlib.sha256(f"{endpoint_id}\0{output_id}".encode()).hexdigest()[:24]
    return f"dlv_{digest}"


@dataclass(frozen=True)
class Outcome:
    """One delivery's result, for `WebhookStore.finish`."""

    ident: str
    token: str
    outcome: str  # succeeded | failed | retry | defer
    endpoint_id: str
    attempt: dict[str, Any] | None  # at, status_code, latency_ms, error; None for defer
    next_at: int = 0  # when a deferred delivery is due again


class WebhookStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self.r, self.p = redis, f"{keys.base}:"  # the scripts' key prefix
        self._create = redis.register_script(scripts.CREATE)
        self._claim = redis.register_script(scripts.CLAIM)
        self._finish = redis.register_script(scripts.FINISH)
        self._retry = redis.register_script(scripts.RETRY)
        self._save_endpoint = redis.register_script(scripts.SAVE_ENDPOINT)

    # --- key layout -----------------------------------------------------------------
    def endpoint_key(self, endpoint_id: str) -> str:
        return f"{self.p}webhook:endpoint:{endpoint_id}"

    @property
    def endpoints_key(self) -> str:
        return f"{self.p}webhook:endpoints"

    def delivery_key(self, ident: str) -> str:
        return f"{self.p}webhook:delivery:{ident}"

    def attempts_key(self, ident: str) -> str:
        return f"{self.p}webhook:attempts:{ident}"

    def log_key(self, endpoint_id: str, hour: int) -> str:
        return f"{self.p}webhook:log:{endpoint_id}:{hour}"

    @property
    def stats_key(self) -> str:
        return f"{self.p}stats:webhook_deliveries"

    @property
    def latency_key(self) -> str:
        return f"{self.p}stats:webhook_latency"

    def due_key(self, at_ms: int) -> str:
        return f"{self.p}webhook:due:{at_ms // 1000}"

    @property
    def due_index_key(self) -> str:
        return f"{self.p}webhook:due:index"

    @property
    def due_oldest_key(self) -> str:
        return f"{self.p}webhook:due:oldest"

    @property
    def due_keys(self) -> list[str]:
        """The due index and its oldest-creation hash, which every script touches."""
        return [self.due_index_key, self.due_oldest_key]

    # --- endpoints ------------------------------------------------------------------
    async def add_endpoint(
        self,
        endpoint_id: str,
        url: str,
        types: list[str],
        description: str | None,
        secret: str,
        now_ms: int,
    ) -> None:
        fields: dict[str, str | int] = {
            "url": url,
            "types": ",".join(types),
            "description": description or "",
            "secret": secret,
            "created_at": now_ms,
        }
        pairs = [part for field, value in fields.items() for part in (field, value)]
        await self._save_endpoint(
            keys=[self.endpoint_key(endpoint_id), self.endpoints_key], args=[endpoint_id, *pairs]
        )

    async def endpoint(self, endpoint_id: str, with_secret: bool = False) -> dict[str, Any] | None:
        raw: Any = await self.r.hgetall(self.endpoint_key(endpoint_id))
        return decode_endpoint(endpoint_id, raw, with_secret) if raw else None

    async def endpoints(self, with_secret: bool = False) -> list[dict[str, Any]]:
        members: Any = await self.r.smembers(self.endpoints_key)
        ids: list[str] = sorted(members)
        pipe = self.r.pipeline(transaction=False)
        for ident in ids:
            pipe.hgetall(self.endpoint_key(ident))
        found = await pipe.execute()
        return [
            decode_endpoint(i, raw, with_secret) for i, raw in zip(ids, found, strict=True) if raw
        ]

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        deleted = await self._save_endpoint(
            keys=[self.endpoint_key(endpoint_id), self.endpoints_key], args=[endpoint_id]
        )
        return bool(deleted)

    # --- deliveries -----------------------------------------------------------------
    async def create(
        self,
        now_ms: int,
        lease_ms: int,
        log_ms: int,
        retries: int,
        deliveries: list[tuple[str, str, str, str, str]],
    ) -> tuple[list[str], str]:
        """Record (id, endpoint, output_id, type, data) deliveries that do not exist
        yet, leased to the caller; returns the ids created and the lease token."""
        token = secrets.token_hex(8)
        args: list[Any] = [self.p, now_ms, now_ms + lease_ms, log_ms, retries, token]
        keys = [*self.due_keys, self.due_key(now_ms + lease_ms)]
        for d in deliveries:
            args += list(d)
            keys += [self.delivery_key(d[0]), self.log_key(d[1], now_ms // HOUR_MS)]
        created = await self._create(keys=keys, args=args)
        return list(created), token

    async def claim_due(
        self, now_ms: int, lease_ms: int, limit: int
    ) -> list[tuple[str, str, str, str, str]]:
        """Up to `limit` due deliveries, leased: (id, lease token, endpoint, output_id,
        data) each."""
        tokens = [secrets.token_hex(8) for _ in range(limit)]
        flat = await self._claim(
            keys=[*self.due_keys, self.due_key(now_ms + lease_ms)],
            args=[self.p, now_ms, lease_ms, limit, *tokens],
        )
        return [tuple(flat[i : i + 5]) for i in range(0, len(flat), 5)]

    async def finish(
        self, now_ms: int, log_ms: int, schedule: list[int], outcomes: list[Outcome]
    ) -> list[str]:
        """Record outcomes where the caller still holds the lease, with each attempt's
        statistics (per endpoint and outcome, latency bucket), in one call; returns
        each delivery's final outcome (`lost` where the lease was taken over)."""
        args: list[Any] = [self.p, now_ms, log_ms, len(schedule), *schedule]
        keys = [*self.due_keys, self.stats_key, self.latency_key]
        for o in outcomes:
            keys += [self.delivery_key(o.ident), self.attempts_key(o.ident)]
            attempt = "" if o.attempt is None else json.dumps(o.attempt, separators=(",", ":"))
            latency = 0 if o.attempt is None else o.attempt["latency_ms"]
            args += [
                o.ident,
                o.token,
                o.outcome,
                o.next_at,
                attempt,
                o.endpoint_id,
                latency_bucket(latency),
                latency,
            ]
        return list(await self._finish(keys=keys, args=args))

    async def retry(self, ident: str, now_ms: int) -> str:
        keys = [*self.due_keys, self.delivery_key(ident), self.due_key(now_ms)]
        return str(await self._retry(keys=keys, args=[self.p, ident, now_ms]))

    async def delivery(self, ident: str) -> dict[str, Any] | None:
        return (await self._deliveries([ident]))[0]

    async def _deliveries(self, idents: list[str]) -> list[dict[str, Any] | None]:
        pipe = self.r.pipeline(transaction=False)
        for ident in idents:
            pipe.hgetall(self.delivery_key(ident))
            pipe.lrange(self.attempts_key(ident), 0, -1)
        replies = await pipe.execute()
        return [
            decode_delivery(ident, raw, attempts) if raw else None
            for ident, raw, attempts in zip(idents, replies[::2], replies[1::2], strict=True)
        ]

    async def deliveries(
        self, endpoint_id: str, now_ms: int, log_ms: int, limit: int, status: str | None
    ) -> list[dict[str, Any]]:
        """Newest first, walking the hourly logs back over the retention (one round
        trip for the hours' lists, then one per hour that lists any)."""
        hours = range(now_ms // HOUR_MS, (now_ms - log_ms) // HOUR_MS - 2, -1)
        pipe = self.r.pipeline(transaction=False)
        for hour in hours:
            pipe.zrevrange(self.log_key(endpoint_id, hour), 0, -1)
        found: list[dict[str, Any]] = []
        for idents in await pipe.execute():
            if not idents:
                continue
            for d in await self._deliveries(list(idents)):
                if d is not None and (status is None or d["status"] == status):
                    found.append(d)
                    if len(found) == limit:
                        return found
        return found

    async def oldest_undelivered_ms(self) -> int | None:
        values = await self.r.hvals(self.due_oldest_key)
        return min((int(float(v)) for v in values), default=None)


def decode_endpoint(endpoint_id: str, raw: dict[str, str], with_secret: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": endpoint_id,
        "url": raw["url"],
        "types": raw["types"].split(","),
        "description": raw.get("description") or None,
        "created_at": int(raw["created_at"]),
    }
    if with_secret:
        out["secret"] = raw["secret"]
    return out


def decode_delivery(ident: str, raw: dict[str, str], attempts: list[str]) -> dict[str, Any]:
    return {
        "id": ident,
        "endpoint_id": raw["endpoint_id"],
        "output_id": raw["output_id"],
        "type": raw["type"],
        "status": raw["status"],
        "attempts": int(raw["attempts"]),
        "next_attempt_at": (
            int(float(raw["next_at"])) if raw["status"] in ("pending", "scheduled") else None
        ),
        "created_at": int(float(raw["created_at"])),
        "attempt_log": [json.loads(a) for a in attempts],
    }
