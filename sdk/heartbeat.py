"""The heartbeat side of metered time: one segment per interval, on the server's clock.

A session runs in its own thread, so the caller's thread never waits on the network.
The start is idempotent (the client picks the session id), so it is retried like any
upload. The server's clock is tracked as an offset from the local monotonic clock,
taken at the midpoint of the start request. Each segment covers the time since the
previous one; a failed upload is retried with the same seq and body (exponential
back-off, bounded), while new segments keep being cut on schedule.

An outage can outlast the session's idle timeout: the engine then closes it as
idle, and once the late grace is over its segments are rejected `late` (SPEC).
Each segment answer says how the server last billed the session, so when it says
`closed` (not by our end flag) the SDK starts a new session at once (`<id>.1`,
`<id>.2`, ...) and keeps metering there, and `report()` tells the app what was
metered, what was billed, and the difference: time is never lost silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any, Protocol

import httpx


class HttpSource(Protocol):
    """What a session needs of its client (`BillingClient` is one): its own pool, as
    the heartbeat runs in a thread of its own. A protocol, so that this module does
    not import the client, which imports it."""

    def new_http(self) -> httpx.Client: ...


RETRYABLE = {408, 425, 429, 500, 502, 503, 504}
log = logging.getLogger(__name__)


class HeartbeatSession:
    def __init__(
        self,
        client: HttpSource,
        user_id: str,
        service_id: str,
        tariff_id: str,
        session_id: str,
        *,
        max_backoff_s: float = 2.0,
        give_up_after_s: float = 120.0,
    ) -> None:
        self.client = client
        self.body = {
            "user_id": user_id,
            "service_id": service_id,
            "tariff_id": tariff_id,
            "session_id": session_id,
        }
        self.session_id = session_id
        self.base_session_id = session_id
        self.session_ids: list[str] = [session_id]  # this one, then any started after a close
        self.closed_by_server: dict[str, dict[str, Any]] = {}  # session id -> its state
        self.max_backoff_s = max_backoff_s
        self.give_up_after_s = give_up_after_s
        self.interval_ms: int | None = None
        self.server_start_ms: int | None = None
        self._offset_ms: float = 0.0
        # (session id, segment body, monotonic time of its first upload attempt or None)
        self._pending: deque[tuple[str, dict[str, Any], float | None]] = deque()
        self._span: tuple[int, int] | None = None  # server ms: first start, last cut
        self._stop_at: float | None = None  # local monotonic time of stop()
        self._wake = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"heartbeat-{session_id}", daemon=True
        )
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

    def report(self) -> dict[str, Any]:
        """After `join()`: the time metered here (first start to stop, server clock),
        the time billed across every session it used (read from the API), and the
        difference, `unbilled_ms`, with each session's status. The billed figures are
        as the flows have them now: ask again once they have caught up."""
        metered = 0 if self._span is None else self._span[1] - self._span[0]
        sessions = []
        http = self.client.new_http()
        try:
            for sid in self.session_ids:
                resp = http.get(f"/v1/sessions/{sid}")
                usage = resp.json() if resp.status_code == 200 else {}
                sessions.append(
                    {
                        "session_id": sid,
                        "billed_ms": usage.get("billed_ms", 0),
                        "status": usage.get("status"),
                        "closed_reason": usage.get("closed_reason"),
                    }
                )
        finally:
            http.close()
        billed = sum(s["billed_ms"] for s in sessions)
        return {
            "metered_ms": metered,
            "billed_ms": billed,
            "unbilled_ms": max(0, metered - billed),
            "sessions": sessions,
            "dropped_segments": len(self.dropped),
        }

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

    def _send(
        self, http: httpx.Client, method: str, path: str, body: dict[str, Any], deadline: float
    ) -> httpx.Response | None:
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
        self._span = (cut_at, cut_at)
        interval_s = self.interval_ms / 1000
        next_tick = time.monotonic() + interval_s
        while True:
            stopping = self._stop_at is not None
            if self.session_id in self.closed_by_server and not stopping:
                if not self._roll_over(http):
                    return
                seq, cut_at = 0, self.server_start_ms
            if stopping or time.monotonic() >= next_tick:
                end = self.server_now_ms(self._stop_at if stopping else None)
                if end > cut_at or stopping:
                    # A stop in the very millisecond of a cut still needs a non-empty
                    # interval to carry the end flag: it bills that one millisecond.
                    segment = {
                        "seq": seq,
                        "start_ms": cut_at,
                        "end_ms": max(end, cut_at + 1),
                        "end": stopping,
                    }
                    self._pending.append((self.session_id, segment, None))
                    seq += 1
                    cut_at = end
                    self._span = (self._span[0], max(self._span[1], segment["end_ms"]))
                next_tick += interval_s
            self._flush(http, final=stopping)
            if stopping:
                return
            self._wake.wait(max(0.0, next_tick - time.monotonic()))

    def _roll_over(self, http: httpx.Client) -> bool:
        """The server closed this session (idle, after an outage): start the next one."""
        closed = self.closed_by_server[self.session_id]
        self.session_id = f"{self.base_session_id}.{len(self.session_ids)}"
        self.session_ids.append(self.session_id)
        self.body = {**self.body, "session_id": self.session_id}
        log.warning(
            "session closed by the server (%s); metering goes on in %s",
            closed.get("closed_reason"),
            self.session_id,
        )
        return self._start_session(http)

    def _flush(self, http: httpx.Client, final: bool) -> None:
        while self._pending:
            sid, segment, first_try = self._pending[0]
            now = time.monotonic()
            first_try = now if first_try is None else first_try
            # While running, a failing upload waits at most until the next tick; when
            # stopping, what is left of its give-up budget.
            budget = (self.interval_ms or 1000) / 1000
            if final:
                budget = max(budget, first_try + self.give_up_after_s - now)
            resp = self._send(http, "POST", f"/v1/sessions/{sid}/segments", segment, now + budget)
            if resp is None:
                if not final and time.monotonic() - first_try < self.give_up_after_s:
                    self._pending[0] = (sid, segment, first_try)
                    return  # keep it at the head; retried after the next cut
                self.dropped.append(self._pending.popleft()[1])
                continue
            self._pending.popleft()
            if resp.status_code not in (200, 202):
                self.dropped.append(segment)
                continue
            state = resp.json().get("session") or {}
            if state.get("status") == "closed" and state.get("closed_reason") != "end":
                self.closed_by_server.setdefault(sid, state)
