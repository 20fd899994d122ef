"""Write endpoints for SPEC's events: one route per event type, plus batches."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from billing import session_view
from billing.events import (
    BatchBody,
    CommissionRuleBody,
    Id,
    OrderBody,
    PayoutBody,
    RefundBody,
    SegmentBody,
    SessionBody,
    TariffBody,
    to_log_dict,
)
from billing.keys import Keys
from ingest_api.appender import Append, Appended, Conflict, Missing
from ingest_api.deps import AppenderDep, KeysDep, RedisDep, SettingsDep, Writer
from ingest_api.ids import ulid
from ingest_api.problems import Problem

router = APIRouter(prefix="/v1", dependencies=[Writer], tags=["ingest"])

Answer = Callable[[Appended], dict[str, Any]]


def _plan(event: dict[str, Any], keys: Keys, report_interval_ms: int) -> tuple[Append, Answer]:
    """How one event is appended (idempotency key and mode) and answered."""
    kind = event["type"]
    if kind == "commission_rule":
        rule_id = event["rule_id"]
        return Append(event, keys.idem("rule", rule_id), "versioned"), lambda a: {
            "rule_id": rule_id,
            "ts": a.ts,
        }
    if kind == "tariff":
        tariff_id = event["tariff_id"]
        return Append(event, keys.idem("tariff", tariff_id), "versioned"), lambda a: {
            "tariff_id": tariff_id,
            "ts": a.ts,
        }
    if kind == "order":
        order_id = event["order_id"]
        return Append(event, keys.idem("order", order_id), "unique"), lambda a: {
            "order_id": order_id,
            "ts": a.ts,
        }
    if kind == "refund":
        refund_id, order_id = event["refund_id"], event["order_id"]
        return Append(event, keys.idem("refund", refund_id), "unique"), lambda a: {
            "refund_id": refund_id,
            "order_id": order_id,
            "ts": a.ts,
        }
    if kind == "payout":
        # No id given: a new payout each time (the server's id), as for sessions.
        payout_id = event.get("payout_id") or ulid("pay-")
        full = {**event, "payout_id": payout_id}
        return Append(full, keys.idem("payout", payout_id), "unique"), lambda a: {
            "payout_id": payout_id,
            "sharer_id": full["sharer_id"],
            "currency": full["currency"],
            "ts": a.ts,
        }
    if kind == "session_start":
        session_id = event.get("session_id") or ulid("ses-")
        full = {**event, "session_id": session_id, "report_interval_ms": report_interval_ms}
        # The interval is the server's choice, not part of what the client sent.
        identity = {k: v for k, v in full.items() if k != "report_interval_ms"}
        plan = Append(
            full,
            keys.idem("session", session_id),
            "unique",
            extra=str(report_interval_ms),
            requires=keys.idem("tariff", event["tariff_id"]),
            identity=identity,
        )
        return plan, lambda a: {
            "session_id": session_id,
            "server_time_ms": a.ts,
            "report_interval_ms": int(a.extra),
        }
    if kind == "segment":
        session_id, seq = event["session_id"], event["seq"]
        return Append(event, keys.idem("segment", f"{session_id}:{seq}"), "unique"), lambda a: {
            "session_id": session_id,
            "seq": seq,
            "ts": a.ts,
        }
    raise ValueError(kind)


def _missing(exc: Missing, where: str) -> Problem:
    tariff_id = exc.key.rsplit(":", 1)[-1]
    return Problem(404, "Unknown tariff", f"{where}tariff {tariff_id!r} is not known")


async def _append(
    event: dict[str, Any], appender: AppenderDep, keys: Keys, settings: SettingsDep
) -> tuple[dict[str, Any], int]:
    """The answer's body and status: 202 when appended, 200 for a repeat."""
    plan, answer = _plan(event, keys, settings.report_interval_ms)
    try:
        (done,) = await appender.append([plan])
    except Conflict as exc:
        raise Problem(409, "Conflict", "this id was already used with a different body") from exc
    except Missing as exc:
        raise _missing(exc, "") from exc
    return answer(done), 202 if done.new else 200


async def _append_one(
    event: dict[str, Any], appender: AppenderDep, keys: Keys, settings: SettingsDep
) -> JSONResponse:
    body, status = await _append(event, appender, keys, settings)
    return JSONResponse(body, status_code=status)


def _event(kind: str, body: Any, **ids: Any) -> dict[str, Any]:
    return {"type": kind, **ids, **to_log_dict(body)}


@router.put("/commission-rules/{rule_id}", status_code=202)
async def put_commission_rule(
    rule_id: Id,
    body: CommissionRuleBody,
    appender: AppenderDep,
    keys: KeysDep,
    settings: SettingsDep,
) -> JSONResponse:
    """A new version of the rule (the same body as the current version: 200, no new version)."""
    return await _append_one(
        _event("commission_rule", body, rule_id=rule_id), appender, keys, settings
    )


@router.put("/tariffs/{tariff_id}", status_code=202)
async def put_tariff(
    tariff_id: Id, body: TariffBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    """A new version of the tariff (the same body as the current version: 200)."""
    return await _append_one(_event("tariff", body, tariff_id=tariff_id), appender, keys, settings)


@router.post("/orders", status_code=202)
async def post_order(
    body: OrderBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    return await _append_one(_event("order", body), appender, keys, settings)


@router.post("/refunds", status_code=202)
async def post_refund(
    body: RefundBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    return await _append_one(_event("refund", body), appender, keys, settings)


@router.post("/payouts", status_code=202)
async def post_payout(
    body: PayoutBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    """Pay a sharer's whole payable balance in one currency, as it stands at this
    point in the log. The amount (or a `nothing_to_pay` reject) comes on the
    `billing:payouts` stream, `/v1/stream` and the sharer's statement."""
    return await _append_one(_event("payout", body), appender, keys, settings)


@router.post("/sessions", status_code=202)
async def post_session(
    body: SessionBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    """Start a metered session; answers the server clock and the reporting interval."""
    return await _append_one(_event("session_start", body), appender, keys, settings)


@router.post("/sessions/{session_id}/segments", status_code=202)
async def post_segment(
    session_id: Id,
    body: SegmentBody,
    appender: AppenderDep,
    redis: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
) -> JSONResponse:
    """One heartbeat segment. Unknown sessions are the engine's to reject (`unknown_session`).

    The answer also carries `session`: the session as last billed (`status`,
    `closed_reason`, `billed_ms`, `version`, `started_ts`), or null before its first
    usage output. A session the engine closed as idle (after an outage, say) takes
    segments only within the late grace, so a client that sees `closed` knows to
    start a new session and to report the time it could not bill (the SDK does).
    """
    answer, status = await _append(
        _event("segment", body, session_id=session_id), appender, keys, settings
    )
    try:
        data = await redis.hget(keys.session_view(session_id), "data")
    except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
        data = None  # the segment is logged; its state is only advice
    usage = session_view.decode(data)
    answer["session"] = (
        None
        if usage is None
        else {
            k: usage[k] for k in ("status", "closed_reason", "billed_ms", "version", "started_ts")
        }
    )
    return JSONResponse(answer, status_code=status)


@router.post("/events", status_code=202)
async def post_events(
    body: BatchBody, appender: AppenderDep, keys: KeysDep, settings: SettingsDep
) -> JSONResponse:
    """A batch of mixed events, written all or nothing, each idempotent as on its own route."""
    if len(body.events) > settings.max_batch_events:
        raise Problem(
            413, "Batch too large", f"at most {settings.max_batch_events} events per batch"
        )
    plans = [_plan(to_log_dict(item), keys, settings.report_interval_ms) for item in body.events]
    try:
        done = await appender.append([plan for plan, _ in plans])
    except Conflict as exc:
        raise Problem(
            409,
            "Conflict",
            f"events[{exc.index}]: this id was already used with a different body; "
            "nothing in the batch was written",
            errors=[{"field": f"body.events.{exc.index}", "reason": "conflict"}],
        ) from exc
    except Missing as exc:
        raise _missing(exc, f"events[{exc.index}]: ") from exc
    results = [
        {"type": item.type, "status": "accepted" if d.new else "repeat", **answer(d)}
        for item, (_, answer), d in zip(body.events, plans, done, strict=True)
    ]
    any_new = any(d.new for d in done)
    return JSONResponse({"results": results}, status_code=202 if any_new else 200)
