"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from billing import sharer_view
from billing.redis_runtime import async_client
from billing.settings import Settings
from ingest_api import log_redaction, openapi_docs, problems
from ingest_api.appender import Appender
from ingest_api.deps import RedisDep
from ingest_api.read_tokens import ReadTokens
from ingest_api.routes import events, pages, read, shares, tokens, webhooks
from ingest_api.scan_guard import ScanGuard
from ingest_api.tokens import ShareTokens
from webhooks.store import WebhookStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]
]


class BodyLimit:
    """413 for bodies over the limit, whether or not Content-Length is sent."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._reject(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                # An HTTPException: FastAPI passes it on while reading a body (any
                # other error there becomes a 400), and the handler answers 413.
                raise HTTPException(413, self._detail)
            return message

        await self.app(scope, limited_receive, send)

    @property
    def _detail(self) -> str:
        return f"request bodies are limited to {self.limit} bytes"

    async def _reject(self, scope: Scope, receive: Any, send: Any) -> None:
        response = problems.problem_response(413, "Payload too large", self._detail)
        await response(scope, receive, send)


health = APIRouter(tags=["health"])


@health.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@health.get("/readyz")
async def readyz(redis: RedisDep) -> JSONResponse:
    try:
        await redis.ping()
    except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
        return problems.problem_response(
            503, "Not ready", "Redis does not answer", headers={"Retry-After": "1"}
        )
    return JSONResponse({"status": "ready"})


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = async_client(
            settings.redis_url,
            cluster=settings.redis_cluster,
            decode_responses=True,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        keys = settings.keys
        app.state.settings = settings
        app.state.redis = client
        app.state.keys = keys
        app.state.appender = Appender(
            client,
            keys.events,
            keys.stats("ingested"),
            settings.retention_ms,
            settings.retention_ms + settings.facts_ttl_margin_ms,
        )
        app.state.tokens = ShareTokens(settings.share_key_pairs) if settings.share_keys else None
        app.state.read_tokens = (
            ReadTokens(settings.share_key_pairs) if settings.share_keys else None
        )
        app.state.scan_guard = ScanGuard(settings)
        app.state.webhooks = WebhookStore(client, keys)
        # Registered once: a Script hashes its text when it is made.
        app.state.read_statement = client.register_script(sharer_view.READ_STATEMENT)
        try:
            yield
        finally:
            await client.aclose()

    app = FastAPI(
        title="Live billing API",
        version="0.1.0",
        lifespan=lifespan,
        description="Ingest for share commissions and metered time; see SPEC.md.",
    )
    problems.install(app)
    openapi_docs.install(app)
    log_redaction.install()
    app.include_router(health)
    app.include_router(events.router)
    app.include_router(shares.router)
    app.include_router(read.router)
    app.include_router(tokens.router)
    app.include_router(webhooks.router)
    app.include_router(pages.router)
    app.mount("/static/vendor", pages.VENDOR, name="vendor")
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app
