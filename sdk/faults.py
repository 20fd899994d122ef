"""A transport that loses requests and answers, for demos and tests of retry paths."""

from __future__ import annotations

import random
import threading

import httpx


class FlakyTransport(httpx.HTTPTransport):
    """Fails a share of requests: half before sending (the request is lost), half
    after (the server acted, the answer is lost), so retries meet both cases."""

    def __init__(self, failure_rate: float, seed: int | None = None) -> None:
        super().__init__()
        self.rng = random.Random(seed)
        self.failure_rate = failure_rate
        self.lock = threading.Lock()
        self.failures = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            roll = self.rng.random()
        if roll < self.failure_rate / 2:
            with self.lock:
                self.failures += 1
            raise httpx.ConnectError("injected: request lost", request=request)
        response = super().handle_request(request)
        if roll < self.failure_rate:
            response.read()
            with self.lock:
                self.failures += 1
            raise httpx.ReadError("injected: answer lost", request=request)
        return response
