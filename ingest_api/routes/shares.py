"""Shares, their QR codes, and the public intermediate scan page."""

from __future__ import annotations

import json
import re
import time
from dataclasses import astuple
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from billing import share_view
from billing.events import Id, ScanBody, ShareBody, to_log_dict
from billing.keys import Keys
from ingest_api import qr
from ingest_api.appender import Append, Appender, Conflict
from ingest_api.deps import AppenderDep, KeysDep, Reader, RedisDep, SettingsDep, TokensDep, Writer
from ingest_api.ids import ulid
from ingest_api.problems import Problem
from ingest_api.scan_guard import ScanGuard
from ingest_api.tokens import InvalidToken, SharePayload, ShareTokens

router = APIRouter(tags=["shares"])

# Link unfurlers fetch the URL to draw a preview; that is not a person scanning.
_PREVIEW_BOTS = re.compile(
    r"facebookexternalhit|facebot|twitterbot|slackbot|slack-imgproxy|discordbot|telegrambot|"
    r"whatsapp|linkedinbot|skypeuripreview|embedly|pinterest|redditbot|applebot|googlebot|"
    r"bingbot|yandex|vkshare|iframely|bitlybot|mastodon|preview",
    re.IGNORECASE,
)


def _share_answer(share_id: str, token: str, settings: SettingsDep) -> dict[str, str]:
    base = settings.public_base_url.rstrip("/")
    return {
        "share_id": share_id,
        "token": token,
        "scan_url": f"{base}/s/{token}",
        "qr_png_url": f"{base}/v1/shares/{share_id}/qr.png",
        "qr_svg_url": f"{base}/v1/shares/{share_id}/qr.svg",
    }


@router.post("/v1/shares", status_code=202, dependencies=[Writer])
async def post_share(
    body: ShareBody,
    appender: AppenderDep,
    keys: KeysDep,
    tokens: TokensDep,
    settings: SettingsDep,
) -> JSONResponse:
    """Create a share: writes the `share` event and answers its sealed token and QR links."""
    allowed = settings.activity_host_list
    if allowed and (urlsplit(body.activity_url).hostname or "") not in allowed:
        raise Problem(
            422,
            "Invalid request",
            "body.activity_url: host not allowed",
            errors=[
                {
                    "field": "body.activity_url",
                    "reason": "its host is not in BILLING_ACTIVITY_HOSTS",
                }
            ],
        )
    share_id = body.share_id or ulid("shr-")
    payload = SharePayload(
        share_id, body.item_id, body.sharer_id, body.activity_url, body.expires_at
    )
    event = {"type": "share", **to_log_dict(body), "share_id": share_id}
    try:
        (done,) = await appender.append(
            [
                Append(
                    event,
                    keys.idem("share", share_id),
                    "unique",
                    extra=_mark_extra(tokens.seal(payload), payload),
                )
            ]
        )
    except Conflict as exc:
        raise Problem(409, "Conflict", "this share_id was already used with another body") from exc
    # On a repeat, the token first issued, unless its key was retired since: re-sealed.
    token = await _current_token(share_id, done.extra, appender, keys, tokens)
    return JSONResponse(
        _share_answer(share_id, token, settings), status_code=202 if done.new else 200
    )


def _mark_extra(token: str, payload: SharePayload) -> str:
    """What a share's idempotency mark keeps: its token, and what to re-seal it from."""
    return json.dumps({"token": token, "payload": astuple(payload)}, separators=(",", ":"))


async def _current_token(
    share_id: str, extra: str, appender: Appender, keys: KeysDep, tokens: ShareTokens
) -> str:
    """The share's token; one sealed with a retired key is sealed again with the
    current one (and kept), so its scan URL and QR code work again."""
    kept = json.loads(extra) if extra.startswith("{") else {"token": extra}
    if tokens.is_current(kept["token"]) or "payload" not in kept:
        return str(kept["token"])
    payload = SharePayload(*kept["payload"])
    token = tokens.seal(payload)
    await appender.replace_extra(keys.idem("share", share_id), _mark_extra(token, payload))
    return token


async def _share_token(
    share_id: str, appender: Appender, keys: KeysDep, tokens: ShareTokens
) -> str:
    extra = await appender.mark_extra(keys.idem("share", share_id))
    if extra is None:
        raise Problem(404, "Unknown share", f"share {share_id!r} does not exist")
    return await _current_token(share_id, extra, appender, keys, tokens)


QrSize = Annotated[int, Query(ge=1, le=40, description="pixels per module")]
QrBorder = Annotated[int, Query(ge=0, le=20, description="quiet zone, in modules")]
QrLevel = Annotated[qr.ErrorCorrection, Query(description="error correction level")]


_QR_FORMATS = {"png": (qr.png, "image/png"), "svg": (qr.svg, "image/svg+xml")}


async def _qr(
    fmt: str,
    share_id: str,
    appender: Appender,
    keys: KeysDep,
    settings: SettingsDep,
    tokens: ShareTokens,
    ec: qr.ErrorCorrection,
    size: int,
    border: int,
) -> Response:
    token = await _share_token(share_id, appender, keys, tokens)
    url = _share_answer(share_id, token, settings)["scan_url"]
    render, media_type = _QR_FORMATS[fmt]
    return Response(render(url, ec, size, border), media_type=media_type)


@router.get("/v1/shares/{share_id}/qr.png", dependencies=[Reader])
async def share_qr_png(
    share_id: Id,
    appender: AppenderDep,
    keys: KeysDep,
    settings: SettingsDep,
    tokens: TokensDep,
    ec: QrLevel = "M",
    size: QrSize = 8,
    border: QrBorder = 4,
) -> Response:
    """The share's QR code (it decodes to `scan_url`) as PNG."""
    return await _qr("png", share_id, appender, keys, settings, tokens, ec, size, border)


@router.get("/v1/shares/{share_id}/qr.svg", dependencies=[Reader])
async def share_qr_svg(
    share_id: Id,
    appender: AppenderDep,
    keys: KeysDep,
    settings: SettingsDep,
    tokens: TokensDep,
    ec: QrLevel = "M",
    size: QrSize = 8,
    border: QrBorder = 4,
) -> Response:
    """The share's QR code (it decodes to `scan_url`) as SVG."""
    return await _qr("svg", share_id, appender, keys, settings, tokens, ec, size, border)


def _verify(token: str, tokens: ShareTokens) -> SharePayload:
    try:
        payload = tokens.open(token)
    except InvalidToken as exc:
        raise Problem(404, "Unknown share link", "this link is not valid") from exc
    if payload.expires_at is not None and time.time() * 1000 >= payload.expires_at:
        raise Problem(410, "Share link expired", "this link has expired")
    return payload


def _with_scan_id(url: str, scan_id: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "scan_id"]
    query.append(("scan_id", scan_id))
    return urlunsplit(parts._replace(query=urlencode(query)))


async def _write_scan(
    payload: SharePayload, scanner_id: str | None, appender: Any, keys: Keys
) -> str:
    scan_id = ulid("scn-")
    event = {
        "type": "scan",
        "scan_id": scan_id,
        "share_id": payload.share_id,
        "item_id": payload.item_id,
        "sharer_id": payload.sharer_id,
        "scanner_id": scanner_id,
    }
    await appender.append([Append(event, funnel=tuple(share_view.scan_args(keys, event)))])
    return scan_id


async def scan_page(
    token: str,
    request: Request,
    appender: AppenderDep,
    tokens: TokensDep,
    redis: RedisDep,
    keys: KeysDep,
) -> Response:
    """The public intermediate page: log the scan, then 302 to the activity page.

    No cookie is read or set. HEAD requests, link-preview bots and visitors over a
    rate limit get the redirect without a scan being logged (and without a
    scan_id). The scanner header counts only from a trusted proxy (scan_guard).
    """
    payload = _verify(token, tokens)
    agent = request.headers.get("user-agent", "")
    if request.method == "HEAD" or _PREVIEW_BOTS.search(agent):
        return RedirectResponse(payload.activity_url, status_code=302)
    guard: ScanGuard = request.app.state.scan_guard
    refused = await guard.refusal(payload.share_id, guard.client_address(request))
    if refused is not None:
        await redis.hincrby(keys.stats("scans_refused"), refused, 1)
        return RedirectResponse(payload.activity_url, status_code=302)
    scan_id = await _write_scan(payload, guard.scanner(request), appender, keys)
    return RedirectResponse(
        _with_scan_id(payload.activity_url, scan_id),
        status_code=302,
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )


router.add_api_route("/s/{token}", scan_page, methods=["GET"], operation_id="scan_page")
router.add_api_route(
    "/s/{token}",
    scan_page,
    methods=["HEAD"],
    operation_id="scan_page_head",
    include_in_schema=False,
)


@router.post("/v1/scans", status_code=202, dependencies=[Writer])
async def post_scan(
    body: ScanBody, appender: AppenderDep, tokens: TokensDep, keys: KeysDep
) -> JSONResponse:
    """An in-app scan: the same scan record as the page, and the redirect URL."""
    payload = _verify(body.token, tokens)
    scan_id = await _write_scan(payload, body.scanner_id, appender, keys)
    return JSONResponse(
        {
            "scan_id": scan_id,
            "share_id": payload.share_id,
            "redirect_url": _with_scan_id(payload.activity_url, scan_id),
        },
        status_code=202,
    )
