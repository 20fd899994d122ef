"""The heartbeat side of metered time: one segment per interval, on the server's clock.

A session runs in its own thread, so the caller's thread never waits on the network.
The start is idempotent (the client picks the session id), so it is retried like any
upload. The server's clock is tracked as an offset from the local monotonic clock,
taken at the midpoint of the start request. Each segment covers the time since the
previous one; a failed upload is retried with the same seq and body (exponential
back-off, bounded), while new segments keep being cut on schedule.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from sdk.client import BillingClient

RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class HeartbeatSession:
    def __init__(self, client: BillingClient, user_id: str, service_id: str, tariff_id: str,
                 session_id: str, *, max_backoff_s: float = 2.0, give_up_after_s: float = 120.0
                 ) -> None:
        self.client = client
        self.body = {"user_id": user_id, "service_id": service_id, "tariff_id": tariff_id,
                     "session_id": session_id}
        self.session_id = session_id
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.interval_ms: int | None = None
        self.server_start_ms: int | None = None
        self._offset_ms: float = 0.0
        # (segment body, monotonic time of its first upload attempt or None)
        self._pending: deque[tuple[dict[str, Any], float | None]] = deque()
        self._stop_at: float | None = None  # local monotonic time of stop()
        self._wake = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{session_id}",
                                        daemon=True)
        self.dropped: list[dict[str, Any]] = []
        self.error: Exception | None = None

    # --- caller side: never blocks on the network -------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the session now; the end flag is sent in the background."""
        if self._stop_at is None:
            self._stop_at = time.monotonic()
            self._wake.set()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def wait_started(self, timeout: float | None = None) -> bool:
        return self._started.wait(timeout)

    def server_now_ms(self, at: float | None = None) -> int:
        return int((time.monotonic() if at is None else at) * 1000 + self._offset_ms)

    # --- the session's thread ---------------------------------------------------------
    def _run(self) -> None:
        http = self.client.new_http()
        try:
            if not self._start_session(http):
                return
            self._heartbeat(http)
        except Exception as exc:  # kept for the app to inspect; a thread must not die loudly
            self.error = exc
        finally:
            http.close()

    def _send(self, http: httpx.Client, method: str, path: str, body: dict[str, Any],
              deadline: float) -> httpx.Response | None:
        """Retry with back-off until a non-retryable answer or the deadline."""
        backoff = 0.05
        while True:
            try:
                resp = http.request(method, path, json=body)
                if resp.status_code not in RETRYABLE:
                    return resp
            except httpx.TransportError:
                pass
            if time.monotonic() + backoff > deadline:
                return None
            self._wake.wait(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _start_session(self, http: httpx.Client) -> bool:
        deadline = time.monotonic() + self.give_up_after_s
        backoff = 0.05
        while True:
            sent = time.monotonic()
            try:
                resp = http.post("/v1/sessions", json=self.body)
            except httpx.TransportError:
                resp = None
            received = time.monotonic()
            if resp is not None and resp.status_code in (200, 202):
                answer = resp.json()
                self.interval_ms = int(answer["report_interval_ms"])
                self.server_start_ms = int(answer["server_time_ms"])
                self._offset_ms = self.server_start_ms - (sent + received) / 2 * 1000
                self._started.set()
                return True
            if resp is not None and resp.status_code not in RETRYABLE:
                self.error = RuntimeError(f"session start refused: {resp.status_code}")
                return False
            if time.monotonic() + backoff > deadline:
                self.error = RuntimeError("session start: gave up")
                return False
            time.sleep(backoff)
            backoff = min(backoff * 2, self.max_backoff_s)

    def _heartbeat(self, http: httpx.Client) -> None:
        assert self.interval_ms is not None and self.server_start_ms is not None
        seq = 0
        cut_at = self.server_start_ms  # server time up to which segments are cut
        interval_s = self.interval_ms / 1000
        next_tick = time.monotonic() + interval_s
        while True:
            stopping = self._stop_at is not None
            if stopping or time.monotonic() >= next_tick:
                end = self.server_now_ms(self._stop_at if stopping else None)
                if end > cut_at or stopping:
                    # A stop in the very millisecond of a cut still needs a non-empty
                    # interval to carry the end flag: it bills that one millisecond.
                    segment = {"seq": seq, "start_ms": cut_at, "end_ms": max(end, cut_at + 1),
                               "end": stopping}
                    self._pending.append((segment, None))
                    seq += 1
                    cut_at = end
                next_tick += interval_s
            self._flush(http, final=stopping)
            if stopping:
                return
            self._wake.wait(max(0.0, next_tick - time.monotonic()))

    def _flush(self, http: httpx.Client, final: bool) -> None:
        path = f"/v1/sessions/{self.session_id}/segments"
        while self._pending:
            segment, first_try = self._pending[0]
            now = time.monotonic()
            first_try = now if first_try is None else first_try
            # While running, a failing upload waits at most until the next tick; when
            # stopping, what is left of its give-up budget.
            budget = (self.interval_ms or 1000) / 1000
            if final:
                budget = max(budget, first_try + self.give_up_after_s - now)
            resp = self._send(http, "POST", path, segment, now + budget)
            if resp is None:
                if not final and time.monotonic() - first_try < self.give_up_after_s:
                    self._pending[0] = (segment, first_try)
                    return  # keep it at the head; retried after the next cut
                self.dropped.append(self._pending.popleft()[0])
                continue
            self._pending.popleft()
            if resp.status_code not in (200, 202):
                self.dropped.append(segment)
