"""HTTP helpers for apps: orders, refunds, payouts, statements, shares and scan links,
metered sessions."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from sdk.heartbeat import HeartbeatSession


class ApiError(Exception):
    def __init__(self, status: int, problem: dict[str, Any]) -> None:
        super().__init__(f"{status}: {problem.get('detail') or problem.get('title')}")
        self.status = status
        self.problem = problem


class BillingClient:
    """Thin, synchronous wrapper of the write API (`Authorization: Bearer <api key>`).

    `read_key` is needed only for reads (`statement`). `transport` lets tests inject
    failures; apps leave it alone.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        read_key: str | None = None,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.read_key = read_key
        self.timeout = timeout
        self.transport = transport
        self.http = self.new_http()

    def new_http(self) -> httpx.Client:
        """A separate connection pool (a heartbeat thread gets its own)."""
        return httpx.Client(
            base_url=self.base_url,
            timeout=self.timeout,
            transport=self.transport,
            headers={"Authorization": f"Bearer {self.api_key}"},
        )

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self._checked(self.http.request(method, path, json=body)).json()

    @staticmethod
    def _checked(resp: httpx.Response) -> httpx.Response:
        if resp.status_code >= 400:
            try:
                problem = resp.json()
            except ValueError:
                problem = {"detail": resp.text}
            raise ApiError(resp.status_code, problem)
        return resp

    def put_tariff(self, tariff_id: str, **fields: Any) -> Any:
        return self._call("PUT", f"/v1/tariffs/{tariff_id}", fields)

    def put_commission_rule(self, rule_id: str, **fields: Any) -> Any:
        return self._call("PUT", f"/v1/commission-rules/{rule_id}", fields)

    def create_share(
        self, item_id: str, sharer_id: str, activity_url: str, expires_at: int | None = None
    ) -> Any:
        body: dict[str, Any] = {
            "item_id": item_id,
            "sharer_id": sharer_id,
            "activity_url": activity_url,
        }
        if expires_at is not None:
            body["expires_at"] = expires_at
        return self._call("POST", "/v1/shares", body)

    def scan_link(self, token: str) -> str:
        """The URL a QR code for this token opens."""
        return f"{self.base_url}/s/{token}"

    def in_app_scan(self, token: str, scanner_id: str | None) -> Any:
        return self._call("POST", "/v1/scans", {"token": token, "scanner_id": scanner_id})

    def post_order(
        self,
        order_id: str,
        buyer_id: str,
        currency: str,
        lines: list[dict[str, Any]],
        scan_id: str | None = None,
    ) -> Any:
        body: dict[str, Any] = {
            "order_id": order_id,
            "buyer_id": buyer_id,
            "currency": currency,
            "lines": lines,
        }
        if scan_id is not None:
            body["scan_id"] = scan_id
        return self._call("POST", "/v1/orders", body)

    def post_refund(
        self, refund_id: str, order_id: str, lines: list[dict[str, Any]] | None = None
    ) -> Any:
        body: dict[str, Any] = {"refund_id": refund_id, "order_id": order_id}
        if lines is not None:
            body["lines"] = lines
        return self._call("POST", "/v1/refunds", body)

    def payout(self, sharer_id: str, currency: str, payout_id: str | None = None) -> Any:
        """Ask to pay the sharer's whole payable balance in `currency`. The id is chosen
        here when not given, so a retry of this call cannot pay twice. The amount (or
        a `nothing_to_pay` reject) comes on the output streams and the statement."""
        body = {
            "sharer_id": sharer_id,
            "currency": currency,
            "payout_id": payout_id or f"pay-{uuid.uuid4().hex}",
        }
        return self._call("POST", "/v1/payouts", body)

    def read_token(self, sharer_id: str | None = None, ttl_ms: int = 3_600_000) -> Any:
        """Mint a signed read token that expires: for one sharer's earnings, statement
        and stream (a sharer portal), or, without a sharer, a short-lived dashboard key."""
        return self._call("POST", "/v1/read-tokens", {"sharer_id": sharer_id, "ttl_ms": ttl_ms})

    def _read_headers(self, method: str) -> dict[str, str]:
        if self.read_key is None:
            raise ValueError(f"{method}() needs the client's read_key")
        return {"Authorization": f"Bearer {self.read_key}"}

    def earnings(self, sharer_id: str) -> Any:
        """Per currency: `pending`, `payable`, `paid`, the totals and the counts."""
        return self._checked(
            self.http.get(
                f"/v1/sharers/{sharer_id}/earnings", headers=self._read_headers("earnings")
            )
        ).json()

    def funnel(self, share_id: str) -> Any:
        """The share's scans, attributed orders and commission per currency."""
        return self._checked(
            self.http.get(f"/v1/shares/{share_id}/funnel", headers=self._read_headers("funnel"))
        ).json()

    def statement(self, sharer_id: str, from_ms: int, to_ms: int, *, as_csv: bool = False) -> Any:
        """The sharer's statement for [from_ms, to_ms): a dict, or CSV text."""
        headers = self._read_headers("statement")
        if as_csv:
            headers["Accept"] = "text/csv"
        resp = self._checked(
            self.http.get(
                f"/v1/sharers/{sharer_id}/statement",
                params={"from": from_ms, "to": to_ms},
                headers=headers,
            )
        )
        return resp.text if as_csv else resp.json()

    def start_session(
        self,
        user_id: str,
        service_id: str,
        tariff_id: str,
        session_id: str | None = None,
        **options: Any,
    ) -> HeartbeatSession:
        """Start a metered session in the background; returns at once."""
        session = HeartbeatSession(
            self,
            user_id,
            service_id,
            tariff_id,
            session_id or f"ses-{uuid.uuid4().hex}",
            **options,
        )
        session.start()
        return session

    def close(self) -> None:
        self.http.close()
