"""The dashboard in a real headless Chromium, fed by the live flows."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from harness.live import flows_env, kill, start_flows
from harness.server import running_api
from sdk import BillingClient
from state.testing import SMALL_RULES
from tests.conftest import READ_KEY, WRITE_KEY

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-dev-shm-usage",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    yield driver
    driver.quit()


def text_of(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def wait_text(driver, element_id: str, wanted: str, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if wanted in text_of(driver, element_id):
            return
        time.sleep(0.1)
    raise AssertionError(f"{wanted!r} not in #{element_id}: {text_of(driver, element_id)!r}")


def test_dashboard_shows_new_figures_live(browser, settings, redis_url, prefix, tmp_path):
    flows = start_flows(flows_env(redis_url, prefix, tmp_path / "rec", SMALL_RULES, lag_ms=200))
    try:
        with running_api(settings.model_copy(update={"report_interval_ms": 60_000})) as base:
            browser.get(f"{base}/dashboard?key={READ_KEY}")
            wait_text(browser, "status", "live")
            client = BillingClient(base, WRITE_KEY, read_key=READ_KEY)
            client.put_commission_rule("r", kind="percent", bps=1000)
            share = client.create_share("lamp", "ana", "https://shop.example/lamp")
            scan = client.in_app_scan(share["token"], "zoe")
            client.post_order(
                "o-1",
                "zoe",
                "USD",
                [{"item_id": "lamp", "quantity": 2, "unit_price_minor": 4999}],
                scan_id=scan["scan_id"],
            )
            client.put_tariff("t", currency="EUR", unit_ms=1000, price_minor=7)
            session = client.start_session("u-9", "render", "t", session_id="sess-dash")
            assert session.wait_started(10)
            client.post_refund("f-1", "nope")  # -> reject unknown_order
            # 10 % of 99.98 = 10.00 accrued; the open session; the reject.
            wait_text(browser, "commission-totals", "USD 10.00 0.00 10.00 0.00 0.00")
            wait_text(browser, "sharers", "ana USD 10.00 0.00 0.00")
            wait_text(browser, "latest-commissions", "o-1 lamp ana accrual 10.00 USD")
            wait_text(browser, "rejects", "unknown_order 1")
            # The session's first heartbeat comes a report interval (60 s) later, so post
            # one now, as the SDK would, to see it counted while open.
            time.sleep(1.2)
            start, end = session.server_start_ms, session.server_now_ms()
            assert start is not None  # the session has started
            resp = client.http.post(
                "/v1/sessions/sess-dash/segments",
                json={"seq": 99, "start_ms": start, "end_ms": end, "end": False},
            )
            assert resp.status_code == 202, resp.text
            deadline = time.monotonic() + 15
            while (usage := client.http.get("/v1/sessions/sess-dash")).status_code != 200:
                assert time.monotonic() < deadline
                time.sleep(0.1)
            billed, fee = usage.json()["billed_ms"], usage.json()["fee_minor"]
            # The whole segment is billed, however slow the machine was to post it.
            assert billed == end - start >= 1200 and fee == 7 * -(-billed // 1000)
            assert billed < 60_000  # the figure below is drawn in seconds
            wait_text(
                browser,
                "open-sessions",
                f"sess-dash u-9 render 0h 00m {billed // 1000:02d}s {fee / 100:.2f} EUR",
            )
            client.post_refund("f-2", "o-1")
            wait_text(browser, "commission-totals", "USD 10.00 -10.00 0.00 0.00 0.00")
            wait_text(browser, "sharers", "ana USD 0.00 0.00 0.00")
            # JPY has no minor digits: 10 % of 1234 yen is 123 yen, not 1.23.
            scan2 = client.in_app_scan(share["token"], "yui")
            client.post_order(
                "o-2",
                "yui",
                "JPY",
                [{"item_id": "lamp", "quantity": 1, "unit_price_minor": 1234}],
                scan_id=scan2["scan_id"],
            )
            wait_text(browser, "sharers", "ana JPY 123 0 0")
            _check_against_the_read_api(browser, client, share["share_id"])
            ARTIFACTS.mkdir(exist_ok=True)
            browser.save_screenshot(str(ARTIFACTS / "dashboard.png"))
            assert os.path.getsize(ARTIFACTS / "dashboard.png") > 10_000
            session.stop()
            session.join(10)
    finally:
        kill(flows)


def _last_points(driver, chart: str) -> list[float]:
    return driver.execute_script(
        f"const c = window.billingCharts.{chart};"
        "return c ? c.data.slice(1).map((s) => s[s.length - 1]) : null;"
    )


def wait_points(driver, chart: str, wanted: list[float], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (got := _last_points(driver, chart)) != wanted:
        assert time.monotonic() < deadline, f"{chart}: {got} != {wanted}"
        time.sleep(0.1)


def _check_against_the_read_api(driver, client: BillingClient, share_id: str) -> None:
    """What the page shows equals what the read API answers, after the workload."""
    earnings = client.earnings("ana")["currencies"]
    for cur, exp in (("USD", 2), ("JPY", 0)):
        e = earnings[cur]
        figures = [e["pending"], e["payable"], e["paid"]]
        wait_text(
            driver, "sharers", f"ana {cur} " + " ".join(f"{v / 10**exp:.{exp}f}" for v in figures)
        )
    funnel = client.funnel(share_id)
    assert (funnel["scans"], funnel["orders"]) == (2, 2)
    assert {c: v["net"] for c, v in funnel["currencies"].items()} == {"USD": 0, "JPY": 123}
    wait_text(driver, "funnels", f"{share_id} lamp ana 2 2 100.0 % 123 JPY, 0.00 USD")
    # The charts are drawn (uPlot canvases), and their running totals end at the
    # figures the API gives, per currency chosen in the picker.
    for chart in ("chart-commissions", "chart-fees"):
        assert driver.find_elements(By.CSS_SELECTOR, f"#{chart} .uplot canvas"), chart
    picker = Select(driver.find_element(By.ID, "chart-currency"))
    picker.select_by_value("USD")
    usd = earnings["USD"]
    wait_points(
        driver, "commissions", [usd["accrued"] / 100, usd["reversed"] / 100, usd["paid"] / 100]
    )
    picker.select_by_value("JPY")
    jpy = earnings["JPY"]
    wait_points(driver, "commissions", [jpy["accrued"], jpy["reversed"], jpy["paid"]])
    picker.select_by_value("EUR")
    fee = client.http.get("/v1/sessions/sess-dash").json()["fee_minor"]
    wait_points(driver, "fees", [fee / 100])
    picker.select_by_value("USD")  # for the screenshot: accrued, then reversed
