"""Minting read tokens (ingest_api.read_tokens) with a write key."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from billing.events import Id
from ingest_api.deps import Writer, get_read_tokens
from ingest_api.read_tokens import ReadTokens

router = APIRouter(prefix="/v1", dependencies=[Writer], tags=["tokens"])
MAX_TTL_MS = 90 * 86_400_000


class ReadTokenBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sharer_id: Id | None = Field(
        None,
        description="Read only this sharer's earnings, statement and stream; "
        "omit for a short-lived token that reads what a read key reads.",
    )
    ttl_ms: int = Field(3_600_000, ge=1_000, le=MAX_TTL_MS)


@router.post("/read-tokens", status_code=201)
async def mint_read_token(
    body: ReadTokenBody, tokens: Annotated[ReadTokens, Depends(get_read_tokens)]
) -> JSONResponse:
    """A signed read token that expires after `ttl_ms`: for a sharer's portal, or for
    the dashboard's `?key=` instead of a long-lived read key."""
    expires_at = time.time_ns() // 1_000_000 + body.ttl_ms
    token = tokens.mint(body.sharer_id, expires_at)
    return JSONResponse(
        {"token": token, "sharer_id": body.sharer_id, "expires_at": expires_at}, status_code=201
    )
