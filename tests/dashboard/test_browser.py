"""The dashboard in a real browser (headless Chromium), on a seeded database behind the real API.

The API's clock is pinned to the seeded day (tests.infra.dashboard_data.NOW): "the last hour" on a
page is the API's, not the wall clock's; the browser runs in a pinned time zone.
With HACKSKY_SCREENSHOTS=<dir> the pages' screenshots are written there (docs/screenshots in the repo).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from sqlalchemy import Engine, insert, select

from agent.api.app import create_app
from agent.central import schema
from tests.infra.api_server import TOKEN, Api, serve
from tests.infra.browser import chromium, click, console_errors, open_page, wait_for
from tests.infra.dashboard_data import NOW, Seeded

READ_TOKEN = "read-only-token"
TANK = "gw-north/plc-01/tank1_level"
FLOW = "gw-north/plc-01/pump1_flow"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    with chromium(tz="UTC") as driver:
        yield driver


def text(driver: WebDriver, css: str = "main") -> str:
    return str(driver.find_element(By.CSS_SELECTOR, css).text)


def rows(driver: WebDriver, css: str = "main table.data tbody tr") -> list[str]:
    return [str(r.text) for r in driver.find_elements(By.CSS_SELECTOR, css)]


def chart(driver: WebDriver, name: str) -> dict[str, Any]:
    """A chart's series labels and data, as uPlot holds them."""
    result: dict[str, Any] = driver.execute_script(
        "const c = window.dash.charts[arguments[0]];"
        "return c ? {labels: c.series.map(s => s.label), data: c.data} : null", name)
    assert result is not None, f"no chart {name}; charts: {driver.execute_script('return Object.keys(dash.charts)')}"
    return result


def chart_span(driver: WebDriver, name: str) -> float:
    """Seconds the chart's time axis spans."""
    return float(driver.execute_script("const x = dash.charts[arguments[0]].scales.x; return x.max - x.min", name))


def screenshot(driver: WebDriver, name: str) -> None:
    """docs/screenshots/<name>.png when HACKSKY_SCREENSHOTS says where; always a valid PNG."""
    png = driver.get_screenshot_as_png()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    target = os.environ.get("HACKSKY_SCREENSHOTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        (Path(target) / f"{name}.png").write_bytes(png)


def test_fleet_shows_gateways_and_devices_with_text_statuses(api: Api, browser: WebDriver) -> None:
    open_page(browser, api.base, "fleet")
    gateways = rows(browser)[:2]
    assert gateways[0].startswith("gw-north online 2026-03-02 11:59:56 (4 s ago) 0.1.0 edge-north 0.012 s 0")
    assert gateways[1].startswith("gw-south offline 2026-03-01 12:00:00 (24.0 h ago)") and "1520" in gateways[1]
    page = text(browser)
    assert "meter-02 Feeder 1 power_meter modbus 10.0.0.22:502 degraded timeout after 3 tries" in page
    assert "Devices of gw-south" in page and "agent stopped" in page
    screenshot(browser, "fleet")
    assert console_errors(browser) == []


def test_power_page_charts_a_meter_from_rollups_with_anomalies_marked(api: Api, browser: WebDriver,
                                                                      seeded: tuple[Engine, Seeded]) -> None:
    open_page(browser, api.base, "power?meter=gw-north/meter-01&range=24h")
    names = browser.execute_script("return [...document.querySelectorAll('main section.panel')].map(s => s.id ||"
                                   " s.querySelector('.chart').id)")
    assert names == ["chart-power", "chart-voltage", "chart-current", "chart-energy", "chart-frequency",
                     "chart-power_factor"], "a chart per role, in the roles' order"
    assert sorted(browser.execute_script("return Object.keys(dash.charts)")) == sorted(
        f"power:{n.removeprefix('chart-')}" for n in names)
    power = chart(browser, "power:power")
    assert power["labels"] == ["time", "active_power (kW)", "anomaly (kW)"]
    times, kw, anomalies = power["data"]
    assert len(times) == 24 * 60 and times[-1] - times[0] == 24 * 3600 - 60  # the day's 1-minute means
    marked = [i for i, k in enumerate(anomalies) if k is not None]
    assert len(marked) == seeded[1].anomalies == 4
    assert all(anomalies[i] == kw[i] > 1.5 * kw[i - 1] for i in marked), "each mark sits on its spike"
    assert chart(browser, "power:voltage")["labels"][1:] == ["voltage_l1 (V)", "voltage_l2 (V)", "voltage_l3 (V)"]
    assert "1m means" in text(browser, "#main section")
    assert "1440\npower rows\n4\nanomalies" in text(browser, ".summary")
    screenshot(browser, "power")
    # 30 days: the hourly rollups (the seeded 2 days of them), the whole range on the axis
    open_page(browser, api.base, "power?meter=gw-north/meter-01&range=30d")
    times, kw, anomalies = chart(browser, "power:power")["data"]
    hourly = [t for t, k in zip(times, kw, strict=True) if k is not None]
    assert len(hourly) == 48 and all(t % 3600 == 0 for t in hourly)
    assert len([k for k in anomalies if k is not None]) == 8, "two days of spikes, marked at their own times"
    assert "1h means" in text(browser, "#main section")
    assert console_errors(browser) == []


def test_signals_page_shows_the_tank_level_flatten_and_bad_quality(api: Api, browser: WebDriver) -> None:
    open_page(browser, api.base, f"signals?sel={TANK},{FLOW}&range=1h")
    level = chart(browser, "signals")
    assert level["labels"] == ["time", "plc-01·tank1_level (m)", "plc-01·pump1_flow (m3/h)"]
    times, tank, flow = level["data"]
    frozen_from = (NOW - timedelta(minutes=40)).replace(tzinfo=UTC).timestamp()
    after = [v for t, v in zip(times, tank, strict=True) if t >= frozen_from and v is not None]
    assert len(after) > 200 and set(after) == {2.5}, "the attack's flat level"
    assert tank.count(None) == 3, "three bad-quality samples are gaps, not values"
    assert {v for v in flow if v is not None} == {40.0}, "the pump's flow goes on"
    table = rows(browser)
    assert table[0].startswith("plc-01 · tank1_level m raw 357 3 2.5 good")
    assert table[1].startswith("plc-01 · pump1_flow m3/h raw 360 0 40 good")
    screenshot(browser, "signals")
    # a point removed from the chart by its button, by keyboard
    wait_for(browser, lambda d: d.find_element(
        By.CSS_SELECTOR, "button[aria-label='remove plc-01 pump1_flow']").send_keys(Keys.ENTER) or True,
             what="the remove button pressed by keyboard")
    wait_for(browser, lambda d: chart(d, "signals")["labels"] == ["time", "plc-01·tank1_level (m)"],
             what="one series left")
    assert "pump1_flow" not in browser.current_url.split("sel=")[1]
    assert console_errors(browser) == []


def test_attacks_page_explains_a_detection_and_links_to_its_signals(api: Api, browser: WebDriver) -> None:
    open_page(browser, api.base, "attacks")
    (row,) = [r for r in rows(browser) if "sensor_tampering" in r]
    assert row.startswith("2026-03-02 11:22:00 ongoing sensor_tampering 92.5% critical Water plant (tank 1)")
    assert "residual level_balance on tank1_level, pump1_flow (score 9.3)" in row
    timeline = chart(browser, "attacks")
    assert timeline["labels"] == ["time", "low (%)", "medium (%)", "high (%)", "critical (%)"]
    assert 92.5 in timeline["data"][4]
    assert chart_span(browser, "attacks") == 7 * 86400, "the whole range on the axis"
    screenshot(browser, "attacks")
    open_page(browser, api.base, "attacks?range=24h")
    assert chart_span(browser, "attacks") == 86400, "a new range moves the axis"
    click(browser, By.LINK_TEXT, "2 signal(s) around it")
    wait_for(browser, lambda d: d.execute_script("return dash.page") == "signals" and "signals" in d.execute_script(
        "return Object.keys(dash.charts)"), what="signals of the detection")
    labels = chart(browser, "signals")["labels"]
    assert labels == ["time", "plc-01·pump1_flow (m3/h)", "plc-01·tank1_level (m)"]
    assert console_errors(browser) == []


def test_a_new_detection_appears_at_the_next_refresh(api: Api, browser: WebDriver,
                                                     seeded: tuple[Engine, Seeded]) -> None:
    open_page(browser, api.base, "attacks")
    before = len(rows(browser))
    loads = browser.execute_script("return dash.loads")
    with seeded[0].begin() as conn:
        conn.execute(insert(schema.attack_detections).values(
            attack_type="replay", confidence=71.0, threat_level="medium", target_system="Feeder 1",
            description="replay suspected", indicators={"signals": ["active_power"], "findings": []},
            detected_at=NOW - timedelta(minutes=2), gateway_id="gw-north", event_key="test/replay",
            created_at=NOW, updated_at=NOW))
    wait_for(browser, lambda d: len(rows(d)) == before + 1, timeout=15, what="the new detection listed")
    assert browser.execute_script("return dash.loads") - loads <= 2, "shown by the next refresh, not a later one"
    assert rows(browser)[0].startswith("2026-03-02 11:58:00 ongoing replay 71% medium Feeder 1")
    assert sorted(v for v in chart(browser, "attacks")["data"][2] if v is not None) == [71.0]


def test_alert_workflow_asks_for_the_token_and_is_refused_without_it(api: Api, browser: WebDriver,
                                                                       seeded: tuple[Engine, Seeded]) -> None:
    open_page(browser, api.base, "alerts")
    open_before = len(rows(browser))
    assert open_before == seeded[1].open_alerts
    screenshot(browser, "alerts")
    # filters: by severity, by gateway (gw-south raised none), every state
    open_page(browser, api.base, "alerts?severity=critical")
    assert [r.split(" ")[2] for r in rows(browser)] == ["critical"]
    open_page(browser, api.base, "alerts?gateway=gw-south")
    assert rows(browser) == ["no open alerts"]
    open_page(browser, api.base, "alerts?state=all")
    assert len(rows(browser)) == open_before + 1, "the resolved one too"
    open_page(browser, api.base, "alerts")
    browser.execute_script("sessionStorage.clear()")
    alert_id = int(browser.find_element(By.CSS_SELECTOR, "button[data-action='acknowledge']").get_attribute(
        "data-alert") or 0)
    click(browser, By.CSS_SELECTOR, f"button[data-alert='{alert_id}'][data-action='acknowledge']")
    dialog = wait_for(browser, lambda d: d.find_element(By.ID, "token-dialog").get_attribute("open") is not None
                      and d.find_element(By.ID, "token-dialog"), what="the token dialog")
    assert "token" in dialog.text.lower()
    browser.find_element(By.ID, "token-input").send_keys("wrong-token")
    browser.find_element(By.ID, "user-input").send_keys("operator ana")
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, lambda d: "refused" in text(d, "#message"), what="the refusal shown")
    a = schema.alerts

    def acknowledged_by() -> Any:
        with seeded[0].connect() as conn:
            return conn.execute(select(a.c.acknowledged_by).where(a.c.id == alert_id)).scalar_one()

    assert acknowledged_by() is None
    click(browser, By.CSS_SELECTOR, f"button[data-alert='{alert_id}'][data-action='acknowledge']")
    wait_for(browser, lambda d: d.find_element(By.ID, "token-dialog").get_attribute("open") is not None,
             what="asked again")
    browser.find_element(By.ID, "token-input").send_keys(TOKEN)
    browser.find_element(By.ID, "token-save").click()
    wait_for(browser, lambda d: "acknowledged by operator ana" in text(d), what="acknowledged")
    assert acknowledged_by() == "operator ana"
    assert TOKEN not in browser.current_url
    assert browser.execute_script("return sessionStorage.getItem('hacksky.token')") == TOKEN
    resources = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert resources and not any(TOKEN in r for r in resources), "the token never travels in a URL"
    # resolve: asked for nothing more (the tab keeps the token); it leaves the open list
    click(browser, By.CSS_SELECTOR, f"button[data-alert='{alert_id}'][data-action='resolve']")
    wait_for(browser, lambda d: len(rows(d)) == open_before - 1, what="resolved")
    assert console_errors(browser) == [] or all("401" in e for e in console_errors(browser))


def test_read_token_keyboard_and_time_zone(seeded: tuple[Engine, Seeded]) -> None:
    """An API with a read token: the page asks for it once; the pages work by keyboard; times show in
    the browser's zone (Kathmandu, +05:45) or in UTC."""
    with serve(create_app(seeded[0], TOKEN, read_token=READ_TOKEN, clock=lambda: NOW)) as api, \
            chromium(tz="Asia/Kathmandu") as driver:
        driver.get(f"{api.base}/dashboard/#/fleet")
        wait_for(driver, lambda d: d.find_element(By.ID, "token-dialog").get_attribute("open") is not None,
                 what="asked for the read token")
        driver.find_element(By.ID, "token-input").send_keys(READ_TOKEN, Keys.ENTER)  # Enter saves
        wait_for(driver, lambda d: d.execute_script("return dash.loads") > 0, what="loaded with the token")
        assert rows(driver)[0].startswith("gw-north online 2026-03-02 17:44:56 (4 s ago)")
        driver.find_element(By.ID, "tz").send_keys("UTC")
        wait_for(driver, lambda d: rows(d)[0].startswith("gw-north online 2026-03-02 11:59:56 UTC"), what="UTC")
        # keyboard, on a fresh load (the tab keeps the token): the skip link first, then the pages' links
        driver.refresh()
        wait_for(driver, lambda d: d.execute_script("return dash.loads") > 0, what="reloaded, asking nothing")
        body = driver.find_element(By.TAG_NAME, "body")
        body.send_keys(Keys.TAB)
        assert driver.switch_to.active_element.get_attribute("id") == "skip"
        for _ in range(4):
            driver.switch_to.active_element.send_keys(Keys.TAB)
        assert driver.switch_to.active_element.text == "Alerts"
        driver.switch_to.active_element.send_keys(Keys.ENTER)
        wait_for(driver, lambda d: d.execute_script("return dash.page") == "alerts" and len(rows(d)) >= 2,
                 what="alerts by keyboard")
        assert driver.find_element(By.CSS_SELECTOR, "nav a[aria-current='page']").text == "Alerts"
        assert console_errors(driver) == [] or all("401" in e for e in console_errors(driver))
