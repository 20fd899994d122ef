"""Read endpoints over the flows' materialised views, and the live output stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from billing import stream_ids
from billing.events import Id
from ingest_api.deps import KeysDep, Reader, RedisDep
from ingest_api.problems import Problem

router = APIRouter(prefix="/v1", dependencies=[Reader], tags=["read"])


@router.get("/sessions/{session_id}")
async def get_session(session_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """The session's current usage record (SPEC `usage` output, latest version)."""
    data = await redis.hget(keys.session_view(session_id), "data")  # type: ignore[misc]
    if data is None:
        raise Problem(404, "Unknown session", f"no usage for session {session_id!r} yet")
    return JSONResponse(json.loads(data))


@router.get("/orders/{order_id}/commissions")
async def get_order_commissions(order_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """The order's accruals and reversals, in `ts` order (accruals first on a tie)."""
    raw = await redis.hvals(keys.order_view(order_id))  # type: ignore[misc]
    if not raw:
        raise Problem(404, "Unknown order", f"no commissions for order {order_id!r}")
    outputs = sorted((json.loads(v) for v in raw),
                     key=lambda o: (o["ts"], o["kind"] != "accrual", o["output_id"]))
    return JSONResponse({"order_id": order_id, "commissions": outputs})


@router.get("/sharers/{sharer_id}/earnings")
async def get_sharer_earnings(sharer_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """Accrued, reversed (negative) and net commission per currency, with counts."""
    totals: dict[str, str] = await redis.hgetall(keys.sharer_view(sharer_id))  # type: ignore[misc,assignment]
    if not totals:
        raise Problem(404, "Unknown sharer", f"no commissions for sharer {sharer_id!r}")
    per: dict[str, dict[str, int]] = {}
    for field, value in totals.items():
        currency, _, name = field.partition(":")
        per.setdefault(currency, {"accrued_minor": 0, "reversed_minor": 0, "accruals": 0,
                                  "reversals": 0})
        slot = {"accrued": "accrued_minor", "reversed": "reversed_minor",
                "accrued_count": "accruals", "reversed_count": "reversals"}[name]
        per[currency][slot] = int(value)
    currencies = {
        cur: {**v, "net_minor": v["accrued_minor"] + v["reversed_minor"]}
        for cur, v in sorted(per.items())
    }
    return JSONResponse({"sharer_id": sharer_id, "currencies": currencies})


OutputType = Literal["commission", "usage", "reject"]


def _matches(out: dict[str, Any], sharer_id: str | None, session_id: str | None) -> bool:
    if sharer_id is not None and out.get("sharer_id") != sharer_id:
        return False
    if session_id is not None:
        own = out.get("session_id") or (out.get("event") or {}).get("session_id")
        return bool(own == session_id)
    return True


async def _events(
    request: Request, redis: Any, streams: list[str], after: str,
    sharer_id: str | None, session_id: str | None, poll_s: float, batch: int = 1000,
) -> AsyncIterator[bytes]:
    """Entries of the output streams merged in id order, from just after `after`.

    The sink gives the three streams ids from one sequence, so ids are unique across
    them and grow in write order. One XREAD reads all of them atomically; when a
    stream's reply is cut by COUNT, entries of the other streams past its last id
    wait for the next read, so nothing is sent ahead of an entry not yet read.
    """
    cursors = dict.fromkeys(streams, after)
    held: list[tuple[tuple[int, int], str, dict[str, str]]] = []
    yield b"retry: 1000\n\n"
    while not await request.is_disconnected():
        # Blocking (briefly) on this client's own connection wakes us as soon as any of
        # the streams grows, instead of on the next poll.
        reply = await redis.xread(cursors, count=batch, block=int(poll_s * 1000))
        limit: tuple[int, int] | None = None
        for stream, entries in reply or []:
            for entry_id, fields in entries:
                held.append((stream_ids.parse(entry_id), entry_id, fields))
            cursors[stream] = entries[-1][0]
            if len(entries) == batch:
                cut = stream_ids.parse(entries[-1][0])
                limit = cut if limit is None else min(limit, cut)
        held.sort(key=lambda h: h[0])
        ready = held if limit is None else [h for h in held if h[0] <= limit]
        held = held[len(ready):]
        chunk = []
        for _key, entry_id, fields in ready:
            out = json.loads(fields["data"])
            if _matches(out, sharer_id, session_id):
                chunk.append(f"id: {entry_id}\nevent: {out['type']}\ndata: {fields['data']}\n\n")
        if chunk:
            yield "".join(chunk).encode()
        elif not reply:
            yield b": keep-alive\n\n"


@router.get("/stream")
async def stream(
    request: Request,
    redis: RedisDep,
    keys: KeysDep,
    type: Annotated[list[OutputType] | None, Query()] = None,
    sharer_id: Id | None = None,
    session_id: Id | None = None,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[str | None, Query(pattern=r"^\d+(-\d+)?$")] = None,
) -> StreamingResponse:
    """Server-Sent Events of the outputs; each event's id is its Redis stream id.

    Resume with `Last-Event-ID` (or `?after=`): no gaps, no repeats. Filters: `type`
    (repeatable), `sharer_id`, `session_id`. Starts from the beginning by default.
    """
    start = last_event_id or after or "0-0"
    try:
        stream_ids.parse(start)
    except ValueError as exc:
        raise Problem(400, "Bad Last-Event-ID", "expected a Redis stream id") from exc
    kinds = type or ["commission", "usage", "reject"]
    streams = [keys.output_stream(kind) for kind in kinds]
    return StreamingResponse(
        _events(request, redis, streams, start, sharer_id, session_id, poll_s=1.0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
