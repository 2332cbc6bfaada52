"""The dashboard in Firefox (Debian's firefox-esr, over WebDriver BiDi): every page draws what the
seeded database holds, with no script error, and the alert workflow works with the token."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.infra.api_server import TOKEN, Api
from tests.infra.dashboard_data import Seeded
from tests.infra.firefox import Firefox, firefox

ROWS = "[...document.querySelectorAll('main table.data tbody tr')].map(r => r.innerText.replace(/\\s+/g, ' '))"
SERIES = "dash.charts[{name!r}].series.map(s => s.label)"


@pytest.fixture(scope="module")
def browser() -> Iterator[Firefox]:
    with firefox() as ff:
        yield ff


def show(ff: Firefox, api: Api, page: str) -> None:
    """Open ``#/page`` afresh and wait until the dashboard finished loading it."""
    ff.get(f"{api.base}/dashboard/#/{page}")
    ff.wait("window.dash && window.dash.loaded === location.hash && window.dash.loads > 0")
    assert ff.js("dash.errors") == 0 and ff.errors == [], ff.errors


def test_every_page_draws_its_data_in_firefox(api: Api, browser: Firefox) -> None:
    show(browser, api, "fleet")
    gateways = browser.js(ROWS)[:2]
    assert gateways[0].startswith("gw-north online 2026-03-02 11:59:56 (4 s ago)"), gateways
    assert gateways[1].startswith("gw-south offline")
    show(browser, api, "power?meter=gw-north/meter-01&range=24h")
    assert sorted(browser.js("Object.keys(dash.charts)")) == [
        "power:current", "power:energy", "power:frequency", "power:power", "power:power_factor", "power:voltage"]
    assert browser.js(SERIES.format(name="power:power")) == ["time", "active_power (kW)", "anomaly (kW)"]
    assert browser.js("dash.charts['power:power'].data[0].length") == 1440
    show(browser, api, "signals?sel=gw-north/plc-01/tank1_level&range=1h")
    assert browser.js("dash.charts.signals.data[1].filter(v => v === null).length") == 3
    assert browser.js(ROWS)[0].startswith("plc-01 · tank1_level m raw 357 3 2.5 good")
    show(browser, api, "attacks")
    assert any("sensor_tampering 92.5% critical" in row for row in browser.js(ROWS))
    browser.js("console.error('seen')")  # the console's errors are collected (the checks above mean something)
    assert browser.js("1") == 1 and browser.errors == ["seen"]
    browser.errors.clear()


def test_alert_workflow_in_firefox(api: Api, browser: Firefox, seeded: tuple[Engine, Seeded]) -> None:
    show(browser, api, "alerts")
    before = len(browser.js(ROWS))
    alert = browser.js("document.querySelector(\"button[data-action='resolve']\").dataset.alert")
    browser.js(f"document.querySelector(\"button[data-alert='{alert}'][data-action='resolve']\").click() || true")
    browser.wait("document.getElementById('token-dialog').open")
    browser.js(f"(document.getElementById('token-input').value = {TOKEN!r}, "
               "document.getElementById('token-save').click(), true)")
    browser.wait(f"document.querySelectorAll('main table.data tbody tr').length === {before - 1}")
    assert browser.js("sessionStorage.getItem('hacksky.token')") == TOKEN
    assert TOKEN not in browser.js("location.href") and browser.errors == []
