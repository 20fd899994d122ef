"""Share tokens: AES-SIV authenticated encryption of what a QR code carries.

Token = `<kid>.<base64url(ciphertext)>`. The plaintext is a compact binary
record (share, item, sharer, activity page, expiry), so nobody can read, forge or
alter it; the key id rides in clear as associated data, so keys rotate: the first
configured key signs, every configured key verifies. AES-SIV needs no nonce, so
the token is as short as the record plus 16 bytes, which keeps the QR sparse.
Verification is the AEAD tag check, which compares in constant time.
"""

from __future__ import annotations

import base64
import struct
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_VERSION = 1


@dataclass(frozen=True)
class SharePayload:
    share_id: str
    item_id: str
    sharer_id: str
    activity_url: str
    expires_at: int | None  # ms since the epoch


class InvalidToken(Exception):
    """Forged, altered, truncated or signed by an unknown key."""


def _derive(secret: str, kid: str) -> AESSIV:
    key = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=b"billing-share-token", info=kid.encode()
    ).derive(secret.encode())
    return AESSIV(key)


def _pack(payload: SharePayload) -> bytes:
    parts = [payload.share_id, payload.item_id, payload.sharer_id, payload.activity_url]
    out = bytearray([_VERSION])
    out += struct.pack(">Q", 0 if payload.expires_at is None else payload.expires_at + 1)
    for text in parts:
        raw = text.encode()
        out += struct.pack(">H", len(raw)) + raw
    return bytes(out)


def _unpack(raw: bytes) -> SharePayload:
    try:
        if raw[0] != _VERSION:
            raise InvalidToken("unknown token version")
        (expiry,) = struct.unpack_from(">Q", raw, 1)
        pos, texts = 9, []
        for _ in range(4):
            (size,) = struct.unpack_from(">H", raw, pos)
            texts.append(raw[pos + 2 : pos + 2 + size].decode())
            pos += 2 + size
        if pos != len(raw):
            raise InvalidToken("trailing bytes")
    except (IndexError, struct.error, UnicodeDecodeError) as exc:
        raise InvalidToken("malformed token") from exc
    share_id, item_id, sharer_id, activity_url = texts
    return SharePayload(
        share_id, item_id, sharer_id, activity_url, None if expiry == 0 else expiry - 1
    )


class ShareTokens:
    def __init__(self, keys: list[tuple[str, str]]) -> None:
        if not keys:
            raise ValueError("no share keys configured (BILLING_SHARE_KEYS)")
        self._signing_kid = keys[0][0]
        self._ciphers = {kid: _derive(secret, kid) for kid, secret in keys}

    def seal(self, payload: SharePayload) -> str:
        kid = self._signing_kid
        sealed = self._ciphers[kid].encrypt(_pack(payload), [kid.encode()])
        return f"{kid}.{base64.urlsafe_b64encode(sealed).rstrip(b'=').decode()}"

    def is_current(self, token: str) -> bool:
        """Sealed with a key still configured (else its QR code no longer scans)."""
        return token.partition(".")[0] in self._ciphers

    def open(self, token: str) -> SharePayload:
        kid, sep, body = token.partition(".")
        cipher = self._ciphers.get(kid)
        if not sep or cipher is None:
            raise InvalidToken("unknown key id")
        try:
            sealed = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            if base64.urlsafe_b64encode(sealed).rstrip(b"=").decode() != body:
                raise InvalidToken("non-canonical encoding")
            return _unpack(cipher.decrypt(sealed, [kid.encode()]))
        except (InvalidTag, ValueError) as exc:
            raise InvalidToken("token does not verify") from exc
