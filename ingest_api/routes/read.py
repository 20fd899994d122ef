"""Read endpoints over the flows' materialised views, and the live output stream."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from billing import order_view, session_view, share_view, sharer_view, stream_ids
from billing.currencies import format_minor
from billing.events import MAX_TIME_MS, Id
from ingest_api.deps import KeysDep, Reader, RedisDep, SettingsDep, StatementScriptDep
from ingest_api.problems import Problem

router = APIRouter(prefix="/v1", dependencies=[Reader], tags=["read"])


@router.get("/sessions/{session_id}")
async def get_session(session_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """The session's current usage record (SPEC `usage` output, latest version)."""
    usage = session_view.decode(await redis.hget(keys.session_view(session_id), "data"))
    if usage is None:
        raise Problem(404, "Unknown session", f"no usage for session {session_id!r} yet")
    return JSONResponse(usage)


@router.get("/orders/{order_id}/commissions")
async def get_order_commissions(order_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """The order's accruals and reversals, in `ts` order (accruals first on a tie)."""
    raw = await redis.hvals(keys.order_view(order_id))
    if not raw:
        raise Problem(404, "Unknown order", f"no commissions for order {order_id!r}")
    outputs = order_view.decode(raw)
    return JSONResponse({"order_id": order_id, "commissions": outputs})


@router.get("/sharers/{sharer_id}/earnings")
async def get_sharer_earnings(sharer_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """Per currency, in minor units: SPEC's balances `pending`, `payable` (negative
    after clawbacks beyond what was left to pay) and `paid`; the totals `accrued`,
    `reversed` (negative) and `net`; and the counts of each kind of output."""
    totals = cast(dict[str, str], await redis.hgetall(keys.sharer_view(sharer_id)))
    if not totals:
        raise Problem(404, "Unknown sharer", f"no commissions for sharer {sharer_id!r}")
    return JSONResponse({"sharer_id": sharer_id, "currencies": sharer_view.earnings(totals)})


@router.get("/shares/{share_id}/funnel")
async def get_share_funnel(share_id: Id, redis: RedisDep, keys: KeysDep) -> JSONResponse:
    """The share's funnel: `scans` logged, `orders` attributed to it, and its
    commission per currency (`accrued`, `reversed`, `net`, minor units). Kept until
    R (and a margin) after its last scan or commission."""
    fields = cast(dict[str, str], await redis.hgetall(keys.share_view(share_id)))
    if not fields:
        raise Problem(404, "Unknown share", f"no scans for share {share_id!r}")
    return JSONResponse(share_view.funnel(share_id, fields))


@router.get("/funnels")
async def get_funnels(
    redis: RedisDep,
    keys: KeysDep,
    limit: Annotated[int, Query(ge=1, le=share_view.ACTIVE_CAP)] = 50,
) -> JSONResponse:
    """The funnels of the most recently scanned shares, newest first."""
    ids: list[str] = await redis.zrevrange(keys.active_shares, 0, limit - 1)  # type: ignore[assignment]
    pipe = redis.pipeline(transaction=False)
    for share_id in ids:
        pipe.hgetall(keys.share_view(share_id))
    views = await pipe.execute()
    return JSONResponse(
        {
            "funnels": [
                share_view.funnel(share_id, fields)
                for share_id, fields in zip(ids, views, strict=True)
                if fields
            ]
        }
    )


TimeArg = Annotated[int, Query(ge=0, le=MAX_TIME_MS)]
CSV_COLUMNS = (
    "ts",
    "time",
    "type",
    "kind",
    "status",
    "currency",
    "amount_minor",
    "amount",
    "order_id",
    "item_id",
    "refund_id",
    "payout_id",
    "output_id",
)


@router.get(
    "/sharers/{sharer_id}/statement",
    responses={
        200: {
            "content": {"application/json": {}, "text/csv": {}},
            "description": "The statement, as JSON or (with `Accept: text/csv`) CSV.",
        }
    },
)
async def get_sharer_statement(
    sharer_id: Id,
    redis: RedisDep,
    keys: KeysDep,
    settings: SettingsDep,
    read_statement: StatementScriptDep,
    from_: Annotated[int, Query(alias="from", ge=0, le=MAX_TIME_MS)],
    to: TimeArg,
    accept: Annotated[str | None, Header()] = None,
) -> Response:
    """The sharer's commission and payout outputs with `from <= ts < to` (ms), in ts
    order, with opening and closing balances per currency (`pending`, `payable`,
    `paid`). Entries are kept for `statement_retention_ms`: an older `from` is 422."""
    if to <= from_:
        raise Problem(
            422,
            "Bad range",
            "`to` must be after `from`",
            errors=[{"field": "query.to", "reason": "not after from"}],
        )
    now_ms = int((await redis.time())[0]) * 1000
    if from_ < now_ms - settings.statement_retention_ms:
        raise Problem(
            422,
            "Range not kept",
            f"statement entries are kept for {settings.statement_retention_ms} ms; `from` is older",
            errors=[{"field": "query.from", "reason": "older than kept history"}],
        )
    first, last = sharer_view.day_of(from_), sharer_view.day_of(max(now_ms, to))
    # EVALSHA, not EVAL: the script's text is sent once per server, not per request.
    reply: Any = await read_statement(
        keys=sharer_view.read_statement_keys(keys, sharer_id, first, last), args=[from_]
    )
    totals, days = sharer_view.decode_read(reply)
    entries = sorted(
        (json.loads(raw) for day in days for raw in day), key=lambda o: (o["ts"], o["output_id"])
    )
    window = [o for o in entries if o["ts"] < to]
    body = {
        "sharer_id": sharer_id,
        "from": from_,
        "to": to,
        **sharer_view.statement(totals, window, entries[len(window) :]),
    }
    if accept and "text/csv" in accept:
        return Response(_csv(window), media_type="text/csv; charset=utf-8")
    return JSONResponse(body)


def _csv(window: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for o in window:
        amount: int = o["amount_minor"] if o["type"] == "payout" else o["commission_minor"]
        when = datetime.fromtimestamp(o["ts"] / 1000, UTC).isoformat(timespec="milliseconds")
        writer.writerow(
            [
                o["ts"],
                when,
                o["type"],
                o.get("kind", ""),
                o.get("status", ""),
                o["currency"],
                amount,
                format_minor(amount, o["currency"]),
                o.get("order_id") or "",
                o.get("item_id") or "",
                o.get("refund_id") or "",
                o.get("payout_id") or "",
                o["output_id"],
            ]
        )
    return buf.getvalue()


OutputType = Literal["commission", "usage", "payout", "reject"]


def _matches(out: dict[str, Any], sharer_id: str | None, session_id: str | None) -> bool:
    if sharer_id is not None and out.get("sharer_id") != sharer_id:
        return False
    if session_id is not None:
        own = out.get("session_id") or (out.get("event") or {}).get("session_id")
        return bool(own == session_id)
    return True


async def _events(
    request: Request,
    redis: Any,
    streams: list[str],
    after: str,
    sharer_id: str | None,
    session_id: str | None,
    poll_s: float,
    batch: int = 1000,
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
        held = held[len(ready) :]
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
    With a sharer's read token, only that sharer's commissions and payouts.
    """
    start = last_event_id or after or "0-0"
    try:
        stream_ids.parse(start)
    except ValueError as exc:
        raise Problem(400, "Bad Last-Event-ID", "expected a Redis stream id") from exc
    kinds = type or ["commission", "usage", "payout", "reject"]
    streams = [keys.output_stream(kind) for kind in kinds]
    # A sharer's read token sees only its sharer's outputs (ingest_api.deps).
    sharer_id = getattr(request.state, "sharer_scope", None) or sharer_id
    return StreamingResponse(
        _events(request, redis, streams, start, sharer_id, session_id, poll_s=1.0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
