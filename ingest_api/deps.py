"""Annotated dependencies: settings, Redis, keys, authentication."""

from __future__ import annotations

import hmac
from typing import Annotated

import redis.asyncio as aioredis
from fastapi import Depends, Request

from billing.keys import Keys
from billing.settings import Settings
from ingest_api.appender import Appender
from ingest_api.problems import Problem
from ingest_api.tokens import ShareTokens


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_redis(request: Request) -> aioredis.Redis:
    return request.app.state.redis  # type: ignore[no-any-return]


def get_keys(request: Request) -> Keys:
    return request.app.state.keys  # type: ignore[no-any-return]


def get_appender(request: Request) -> Appender:
    return request.app.state.appender  # type: ignore[no-any-return]


def get_tokens(request: Request) -> ShareTokens:
    tokens = request.app.state.tokens
    if tokens is None:
        raise Problem(503, "Shares not configured", "BILLING_SHARE_KEYS is not set")
    return tokens  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
RedisDep = Annotated[aioredis.Redis, Depends(get_redis)]
KeysDep = Annotated[Keys, Depends(get_keys)]
AppenderDep = Annotated[Appender, Depends(get_appender)]
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


def require_reader(request: Request, settings: SettingsDep) -> None:
    # A write key may read too: whoever can write the log may see what it bills.
    # `?key=` is for EventSource and <img>, which cannot send an Authorization header.
    offered = _bearer(request) or request.query_params.get("key", "")
    if not _matches(offered, settings.read_key_list + settings.api_key_list):
        raise _unauthorized("read endpoints need Authorization: Bearer <read key>")


Writer = Depends(require_writer)
Reader = Depends(require_reader)
