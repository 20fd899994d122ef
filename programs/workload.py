"""The demo's simulated users, all through the public HTTP API.

Sharers create shares; shoppers open the scan page (as a phone would, with the
scanner header) and order what they scanned, passing the `scan_id` from the redirect;
some orders are refunded; metered sessions run through the heartbeat SDK, some over a
lossy network.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx

from sdk import BillingClient, HeartbeatSession
from sdk.faults import FlakyTransport

ITEMS = {"lamp": 4_999, "mug": 1_250, "poster": 2_000, "kettle": 3_333}
SHARERS = ["ana", "ben", "chloe", "dev"]
SHOPPERS = [f"shopper{n}" for n in range(12)]


class Workload:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        scanner_header: str,
        *,
        sessions: int = 30,
        seed: int | None = None,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.scanner_header = scanner_header
        self.target_sessions = sessions
        self.rng = random.Random(seed)
        self.stop_event = threading.Event()
        self.client = BillingClient(base_url, api_key)
        self.flaky = BillingClient(base_url, api_key, transport=FlakyTransport(0.2))
        self.sessions: list[tuple[HeartbeatSession, float]] = []
        self.counts = {
            "shares": 0,
            "scans": 0,
            "orders": 0,
            "refunds": 0,
            "sessions": 0,
            "payouts": 0,
        }
        self.threads = [
            threading.Thread(target=self._shopping, daemon=True),
            threading.Thread(target=self._metering, daemon=True),
            threading.Thread(target=self._paying, daemon=True),
        ]

    def setup(self) -> None:
        self.client.put_tariff(
            "standard",
            currency="USD",
            unit_ms=1000,
            price_minor=2,
            free_ms=2000,
            min_charge_minor=5,
        )
        self.client.put_tariff("premium", currency="EUR", unit_ms=500, price_minor=3)
        self.client.put_commission_rule("default", kind="percent", bps=500)
        self.client.put_commission_rule(
            "lamps", kind="percent", bps=1000, item_id="lamp", cap_minor=400
        )
        self.client.put_commission_rule(
            "ana-mugs", kind="flat", amount_minor=50, currency="USD", sharer_id="ana", item_id="mug"
        )

    def start(self) -> None:
        self.setup()
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for session, _ in self.sessions:
            session.stop()
        for session, _ in self.sessions:
            session.join(10)
        for thread in self.threads:
            thread.join(10)

    def _shopping(self) -> None:
        shares: list[dict[str, str]] = []
        browser = httpx.Client(follow_redirects=False, timeout=5)
        orders: list[str] = []
        while not self.stop_event.wait(self.rng.uniform(0.05, 0.3)):
            try:
                if len(shares) < 8 or self.rng.random() < 0.05:
                    item = self.rng.choice(list(ITEMS))
                    shares.append(
                        self.client.create_share(
                            item, self.rng.choice(SHARERS), f"https://shop.example/{item}"
                        )
                    )
                    self.counts["shares"] += 1
                    continue
                share = self.rng.choice(shares)
                shopper = self.rng.choice(SHOPPERS)
                redirect = browser.get(share["scan_url"], headers={self.scanner_header: shopper})
                self.counts["scans"] += 1
                if self.rng.random() < 0.5:
                    location = urlsplit(redirect.headers["location"])
                    scan_id = parse_qs(location.query)["scan_id"][0]
                    item = location.path.rsplit("/", 1)[-1]
                    order_id = f"ord-{uuid.uuid4().hex[:12]}"
                    lines = [
                        {
                            "item_id": item,
                            "quantity": self.rng.randint(1, 3),
                            "unit_price_minor": ITEMS[item],
                        }
                    ]
                    currency = self.rng.choices(["USD", "EUR", "JPY"], [7, 2, 1])[0]
                    self.client.post_order(order_id, shopper, currency, lines, scan_id=scan_id)
                    orders.append(order_id)
                    self.counts["orders"] += 1
                if orders and self.rng.random() < 0.08:
                    order_id = orders.pop(self.rng.randrange(len(orders)))
                    self.client.post_refund(f"ref-{uuid.uuid4().hex[:12]}", order_id)
                    self.counts["refunds"] += 1
            except (httpx.HTTPError, KeyError, Exception):
                time.sleep(0.5)

    def _paying(self, every_s: float = 10.0) -> None:
        """Finance pays every sharer's payable balance now and then, per currency."""
        while not self.stop_event.wait(every_s):
            for sharer in SHARERS:
                for currency in ("USD", "EUR", "JPY"):
                    try:
                        self.client.payout(sharer, currency)
                        self.counts["payouts"] += 1
                    except Exception:
                        time.sleep(0.5)

    def _metering(self) -> None:
        while not self.stop_event.wait(0.2):
            now = time.monotonic()
            for session, until in list(self.sessions):
                if now >= until:
                    session.stop()
                    self.sessions.remove((session, until))
            if len(self.sessions) < self.target_sessions:
                client = self.flaky if self.rng.random() < 0.25 else self.client
                session = client.start_session(
                    f"user{self.rng.randrange(50)}",
                    self.rng.choice(["render", "transcode"]),
                    self.rng.choice(["standard", "premium"]),
                )
                self.sessions.append((session, now + self.rng.uniform(5, 45)))
                self.counts["sessions"] += 1
