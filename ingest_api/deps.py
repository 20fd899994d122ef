"""Annotated dependencies: settings, Redis, keys, authentication."""

from __future__ import annotations

import hmac
import time
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request
from redis.commands.core import AsyncScript

from billing.keys import Keys
from billing.settings import Settings
from ingest_api.appender import Appender
from ingest_api.problems import Problem
from ingest_api.read_tokens import PREFIX, InvalidReadToken, ReadTokens
from ingest_api.tokens import ShareTokens


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis


def get_keys(request: Request) -> Keys:
    return request.app.state.keys


def get_appender(request: Request) -> Appender:
    return request.app.state.appender


def get_statement_script(request: Request) -> AsyncScript:
    return request.app.state.read_statement


def get_tokens(request: Request) -> ShareTokens:
    tokens = request.app.state.tokens
    if tokens is None:
        raise Problem(503, "Shares not configured", "BILLING_SHARE_KEYS is not set")
    return tokens


def get_read_tokens(request: Request) -> ReadTokens:
    tokens = request.app.state.read_tokens
    if tokens is None:
        raise Problem(503, "Read tokens not configured", "BILLING_SHARE_KEYS is not set")
    return tokens


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
KeysDep = Annotated[Keys, Depends(get_keys)]
AppenderDep = Annotated[Appender, Depends(get_appender)]
StatementScriptDep = Annotated[AsyncScript, Depends(get_statement_script)]
TokensDep = Annotated[ShareTokens, Depends(get_tokens)]


def _bearer(request: Request) -> str:
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else ""


def _matches(candidate: str, keys: list[str]) -> bool:
    # Compare against every key, always, so timing does not tell which one nearly matched.
    found = False
    for key in keys:
        found |= hmac.compare_digest(candidate.encode(), key.encode())
    return found and bool(candidate)


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "Unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def require_writer(request: Request, settings: SettingsDep) -> None:
    if not _matches(_bearer(request), settings.api_key_list):
        raise _unauthorized("write endpoints need Authorization: Bearer <api key>")


# What a sharer's read token may read: its own earnings and statement, and the
# stream filtered to its outputs (the stream route applies `sharer_scope`).
SHARER_ROUTES = (
    "/v1/sharers/{sharer_id}/earnings",
    "/v1/sharers/{sharer_id}/statement",
    "/v1/stream",
)


def require_reader(request: Request, settings: SettingsDep) -> None:
    # A write key may read too: whoever can write the log may see what it bills.
    # `?key=` is for EventSource and <img>, which cannot send an Authorization header.
    offered = _bearer(request) or request.query_params.get("key", "")
    request.state.sharer_scope = None
    if offered.startswith(PREFIX):
        _check_read_token(request, offered)
        return
    if not _matches(offered, settings.read_key_list + settings.api_key_list):
        raise _unauthorized("read endpoints need Authorization: Bearer <read key>")


def _check_read_token(request: Request, token: str) -> None:
    tokens: ReadTokens | None = request.app.state.read_tokens
    if tokens is None:
        raise _unauthorized("read tokens are not configured here")
    try:
        scope = tokens.verify(token, time.time_ns() // 1_000_000)
    except InvalidReadToken as exc:
        raise _unauthorized(f"read token refused: {exc}") from exc
    sharer = scope.sharer_id
    if sharer is None:
        return
    route = getattr(request.scope.get("route"), "path", "")
    asked = request.path_params.get("sharer_id", request.query_params.get("sharer_id", sharer))
    if route not in SHARER_ROUTES or asked != sharer:
        raise Problem(
            403, "Forbidden", "this token reads only its sharer's earnings, statement and stream"
        )
    request.state.sharer_scope = sharer


Writer = Depends(require_writer)
Reader = Depends(require_reader)
