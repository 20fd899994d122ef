"""A real webhook receiver on 127.0.0.1 and a dispatcher process, for the webhook tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.outputs import accrual_output


class Receiver:
    """Records every request; answers `fail_first` 500s per webhook-id, or always
    500 while `failing`, after sleeping `delay_s`."""

    def __init__(
        self, fail_first: int = 0, delay_s: float = 0.0, redirect_to: str | None = None
    ) -> None:
        self.fail_first, self.delay_s, self.failing = fail_first, delay_s, False
        self.redirect_to = redirect_to
        self.requests: list[dict[str, Any]] = []
        self.attempts: dict[str, int] = {}  # webhook-id -> requests seen
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(receiver.delay_s)
                with receiver.lock:
                    ident = self.headers.get("webhook-id", "")
                    seen = receiver.attempts.get(ident, 0)
                    receiver.attempts[ident] = seen + 1
                    ok = not receiver.failing and seen >= receiver.fail_first
                    receiver.requests.append(
                        {
                            "id": ident,
                            "headers": dict(self.headers),
                            "body": body,
                            "at": time.monotonic(),
                            "answered": 200 if ok else 500,
                        }
                    )
                if receiver.redirect_to:
                    receiver.requests[-1]["answered"] = 307
                    self.send_response(307)
                    self.send_header("location", receiver.redirect_to)
                else:
                    self.send_response(200 if ok else 500)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> dict[str, dict[str, Any]]:
        """webhook-id -> the first request answered 2xx."""
        with self.lock:
            out: dict[str, dict[str, Any]] = {}
            for r in self.requests:
                if r["answered"] == 200:
                    out.setdefault(r["id"], r)
            return out


def verify_by_hand(
    secret: str, headers: dict[str, str], body: bytes, tolerance_s: int = 300
) -> bool:
    """Standard Webhooks, from its specification text alone (no library): the
    base64 HMAC-SHA256, keyed by the secret's base64 after `whsec_`, of
    `{id}.{timestamp}.{body}`, as one of the space-separated `v1,` signatures."""
    h = {k.lower(): v for k, v in headers.items()}
    stamp = int(h["webhook-timestamp"])
    if abs(time.time() - stamp) > tolerance_s:
        return False
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{h['webhook-id']}.{stamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(sig.split(",", 1) == ["v1", expected] for sig in h["webhook-signature"].split())


def output(kind: str, n: int) -> dict[str, Any]:
    """A small output of each type, as the sink writes them."""
    if kind == "usage":
        return {
            "type": "usage",
            "output_id": f"usage:s{n}:1:1",
            "session_id": f"s{n}",
            "started_ts": 1,
            "version": 1,
            "fee_minor": n,
        }
    if kind == "reject":
        return {"type": "reject", "output_id": f"reject:{n}", "reason": "duplicate", "event": {}}
    if kind == "payout":
        return {
            "type": "payout",
            "output_id": f"payout:p{n}:5",
            "payout_id": f"p{n}",
            "sharer_id": "al",
            "currency": "USD",
            "amount_minor": n,
            "ts": 5,
        }
    return accrual_output(f"o{n}", 5, n)


def body_of(request: dict[str, Any]) -> dict[str, Any]:
    return json.loads(request["body"])


def subscribe(api: Any, url: str, types: list[str]) -> dict[str, Any]:
    """Save an endpoint for `url` and `types` through the API; its answer (with the secret)."""
    resp = api.post("/v1/webhook-endpoints", json={"url": url, "types": types})
    assert resp.status_code == 201, resp.text
    return resp.json()
