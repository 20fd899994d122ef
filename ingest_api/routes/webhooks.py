"""Webhook endpoints (SPEC "Interfaces"): saved, listed, deleted, and their deliveries.

The secret is made here and shown once, in the 201. URLs must be http(s), and
every address their host resolves to public, unless BILLING_WEBHOOK_ALLOW_PRIVATE
(webhooks.addresses; checked again at each delivery). The dispatcher
(`billing webhooks`) does the sending.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from ingest_api.deps import SettingsDep, Writer
from ingest_api.ids import ulid
from ingest_api.problems import Problem
from webhooks.addresses import RefusedAddress, check_url
from webhooks.store import WebhookStore, new_secret

router = APIRouter(prefix="/v1/webhook-endpoints", dependencies=[Writer], tags=["webhooks"])
OutputType = Literal["commission", "usage", "payout", "reject"]
DeliveryStatus = Literal["pending", "scheduled", "succeeded", "failed"]
EndpointId = Annotated[str, Field(pattern=r"^whe_[A-Za-z0-9]{1,64}$")]
DeliveryId = Annotated[str, Field(pattern=r"^dlv_[0-9a-f]{24}$")]


class EndpointBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=2048, description="http or https; a public address")
    types: list[OutputType] = Field(min_length=1, max_length=4)
    description: str | None = Field(None, max_length=500)


def get_store(request: Request) -> WebhookStore:
    return request.app.state.webhooks


StoreDep = Annotated[WebhookStore, Depends(get_store)]


def _now() -> int:
    return time.time_ns() // 1_000_000


async def _endpoint_or_404(store: WebhookStore, endpoint_id: str) -> dict[str, object]:
    found = await store.endpoint(endpoint_id)
    if found is None:
        raise Problem(404, "Unknown webhook endpoint", f"no endpoint {endpoint_id!r}")
    return found


@router.post("", status_code=201)
async def create_endpoint(
    body: EndpointBody, store: StoreDep, settings: SettingsDep
) -> JSONResponse:
    """Save an endpoint. The answer carries its `secret` (`whsec_…`): shown this once."""
    try:
        await run_in_threadpool(check_url, body.url, settings.webhook_allow_private)
    except RefusedAddress as exc:
        raise Problem(
            422, "Webhook URL refused", str(exc), errors=[{"field": "body.url", "reason": str(exc)}]
        ) from exc
    endpoint_id, secret = ulid("whe_"), new_secret()
    types: list[str] = sorted(set(body.types))
    await store.add_endpoint(endpoint_id, body.url, types, body.description, secret, _now())
    created = await _endpoint_or_404(store, endpoint_id)
    return JSONResponse({**created, "secret": secret}, status_code=201)


@router.get("")
async def list_endpoints(store: StoreDep) -> JSONResponse:
    """Every endpoint, without secrets."""
    return JSONResponse({"endpoints": await store.endpoints()})


@router.get("/{endpoint_id}")
async def get_endpoint(endpoint_id: EndpointId, store: StoreDep) -> JSONResponse:
    """One endpoint, without its secret."""
    return JSONResponse(await _endpoint_or_404(store, endpoint_id))


@router.delete("/{endpoint_id}", status_code=204)
async def delete_endpoint(endpoint_id: EndpointId, store: StoreDep) -> Response:
    """Stop sending to it; deliveries still due to it fail as `endpoint deleted`."""
    if not await store.delete_endpoint(endpoint_id):
        raise Problem(404, "Unknown webhook endpoint", f"no endpoint {endpoint_id!r}")
    return Response(status_code=204)


@router.get("/{endpoint_id}/deliveries")
async def list_deliveries(
    endpoint_id: EndpointId,
    store: StoreDep,
    settings: SettingsDep,
    status: DeliveryStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JSONResponse:
    """Its deliveries, newest first, each with its attempts (time, status code,
    latency, error), kept `webhook_log_retention_ms` after their last change."""
    await _endpoint_or_404(store, endpoint_id)
    found = await store.deliveries(
        endpoint_id, _now(), settings.webhook_log_retention_ms, limit, status
    )
    return JSONResponse({"deliveries": found})


@router.post("/{endpoint_id}/deliveries/{delivery_id}/retry", status_code=202)
async def retry_delivery(
    endpoint_id: EndpointId, delivery_id: DeliveryId, store: StoreDep
) -> JSONResponse:
    """Try a `failed` delivery once more, now (409 for any other status)."""
    await _endpoint_or_404(store, endpoint_id)
    found = await store.delivery(delivery_id)
    if found is None or found["endpoint_id"] != endpoint_id:
        raise Problem(404, "Unknown delivery", f"no delivery {delivery_id!r} for this endpoint")
    answer = await store.retry(delivery_id, _now())
    if answer != "ok":
        raise Problem(409, "Not failed", f"the delivery is {answer}; only failed ones are retried")
    return JSONResponse(await store.delivery(delivery_id), status_code=202)
