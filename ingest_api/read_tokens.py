"""Signed, expiring read tokens: one sharer's portal, or a short-lived dashboard.

Token = `rt.<kid>.<base64url(payload)>.<base64url(HMAC-SHA256)>`, the MAC over
everything before the last dot. The payload is `{"sub": sharer_id or null, "exp": ms}`:
with a sharer it reads only that sharer's earnings, statement and stream
(ingest_api.deps enforces it); without one it reads what a read key reads, until
it expires, which is what the dashboard's `?key=` should carry instead of a
long-lived key. The MAC keys are derived (HKDF, their own salt) from the share
keys, so they rotate with them: the first configured key signs, every configured
key verifies, and no second secret needs managing. Minted with a write key
(`POST /v1/read-tokens`); nothing is stored, so a token cannot be revoked before it
expires, except by retiring its key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "rt."


class InvalidReadToken(Exception):
    """Forged, altered, expired, or signed by a key no longer configured."""


@dataclass(frozen=True)
class ReadScope:
    sharer_id: str | None  # None: everything a read key may read
    expires_at: int


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(raw) != text:
        raise ValueError("non-canonical encoding")
    return raw


def _derive(secret: str, kid: str) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"billing-read-token", info=kid.encode()
    ).derive(secret.encode())


class ReadTokens:
    def __init__(self, keys: list[tuple[str, str]]) -> None:
        if not keys:
            raise ValueError("no share keys configured (BILLING_SHARE_KEYS)")
        self._signing_kid = keys[0][0]
        self._keys = {kid: _derive(secret, kid) for kid, secret in keys}

    def _mac(self, kid: str, signed: str) -> bytes:
        return hmac.new(self._keys[kid], signed.encode(), hashlib.sha256).digest()

    def mint(self, sharer_id: str | None, expires_at: int) -> str:
        kid = self._signing_kid
        payload = json.dumps({"sub": sharer_id, "exp": expires_at}, separators=(",", ":"))
        signed = f"{PREFIX}{kid}.{_b64(payload.encode())}"
        return f"{signed}.{_b64(self._mac(kid, signed))}"

    def verify(self, token: str, now_ms: int) -> ReadScope:
        signed, _, mac = token.rpartition(".")
        parts = signed.split(".")
        if len(parts) != 3 or f"{parts[0]}." != PREFIX or parts[1] not in self._keys:
            raise InvalidReadToken("unknown token format or key id")
        try:
            good = hmac.compare_digest(_unb64(mac), self._mac(parts[1], signed))
            if not good:
                raise InvalidReadToken("token does not verify")
            payload = json.loads(_unb64(parts[2]))
            sub, exp = payload["sub"], payload["exp"]
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidReadToken("malformed token") from exc
        if not isinstance(exp, int) or not (sub is None or isinstance(sub, str)):
            raise InvalidReadToken("malformed token")
        if now_ms >= exp:
            raise InvalidReadToken("token expired")
        return ReadScope(sub, exp)
