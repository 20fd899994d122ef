"""The dashboard page and Prometheus metrics."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

from ingest_api import metrics
from ingest_api.deps import KeysDep, Reader, RedisDep

router = APIRouter(tags=["pages"])
_STATIC = Path(__file__).parent.parent / "static"
_DASHBOARD = (_STATIC / "dashboard.html").read_text()
# Third-party files served as they were published (no build step); each folder
# keeps the package's version in its name and its LICENSE.
VENDOR = StaticFiles(directory=_STATIC / "vendor")


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
