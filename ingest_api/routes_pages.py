"""The dashboard page and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from ingest_api import metrics
from ingest_api.deps import KeysDep, Reader, RedisDep

router = APIRouter(tags=["pages"])
_DASHBOARD = (Path(__file__).parent / "static" / "dashboard.html").read_text()


@router.get("/dashboard", response_class=HTMLResponse, dependencies=[Reader])
async def dashboard() -> HTMLResponse:
    """Live totals, open sessions, latest commissions and rejects, from `/v1/stream`.

    Open it as `/dashboard?key=<read key>`: the page passes the key on to the stream.
    """
    return HTMLResponse(_DASHBOARD, headers={"Cache-Control": "no-store"})


@router.get("/metrics", dependencies=[Reader])
async def prometheus(redis: RedisDep, keys: KeysDep) -> Response:
    body = await metrics.render(redis, keys)
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")
