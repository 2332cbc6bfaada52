"""``hacksky-edge demo`` as a newcomer sees it: simulators, agent and SQLite with a live summary,
and the URL it prints opens the dashboard, where the attack appears on the Attacks page and the
tank level flattens on the Signals page."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from selenium.webdriver.common.by import By

from simulators.server import free_port
from tests.helpers import ROOT, demo_config, wait_until
from tests.infra.browser import chromium, click, console_errors, open_page, wait_for


def test_the_demo_prints_its_dashboard_where_the_attack_shows(tmp_path: Path) -> None:
    config, port = demo_config(tmp_path), free_port()
    log = tmp_path / "demo.out"
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "agent", "demo", "-c", str(config), "--duration", "300",
                                 "--attack-after", "6", "--dashboard-port", str(port)], cwd=ROOT, text=True,
                                stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        wait_until(lambda: "\ndashboard: " in log.read_text() or demo.poll() is not None, timeout=30)
        assert f"\ndashboard: http://127.0.0.1:{port}/dashboard/" in log.read_text(), log.read_text()
        with chromium() as driver:
            base = f"http://127.0.0.1:{port}"
            open_page(driver, base, "attacks?range=1h")
            wait_for(driver, lambda d: d.find_elements(By.PARTIAL_LINK_TEXT, "around it"), timeout=60,
                     what="the demo's attack on the Attacks page")
            row = driver.find_element(By.CSS_SELECTOR, "main table.data tbody tr").text
            assert "Water plant (tank 1)" in row and "%" in row
            click(driver, By.PARTIAL_LINK_TEXT, "around it")
            wait_for(driver, lambda d: d.execute_script("return dash.page === 'signals' && !!dash.charts.signals"),
                     what="the detection's signals charted")
            labels = driver.execute_script("return dash.charts.signals.series.map(s => s.label)")
            assert "plc-01·tank1_level (m)" in labels, labels
            # the level flattens: the attack freezes what the PLC reports while the pump runs
            open_page(driver, base, "signals?sel=demo-gw01/plc-01/tank1_level&range=1h")
            level = [v for v in driver.execute_script("return dash.charts.signals.data[1]") if v is not None]
            tail = level[-5:]
            assert len(tail) == 5 and len(set(tail)) == 1, level[-20:]
            assert console_errors(driver) == []
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    out = log.read_text()
    assert demo.returncode == 0, out[-3000:]
    assert "devices up 6/6" in out and "done:" in out and "rows scored" in out
    assert "| DETECTED " in out, "the summary line shows the detection"
    status = subprocess.run([sys.executable, "-m", "agent", "status", "-c", str(config)], cwd=ROOT, text=True,
                            capture_output=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert status.returncode == 3 and "\ndetection " in status.stdout, "the stopped agent's last state, exit 3"
    with sqlite3.connect(tmp_path / "demo.db") as conn:
        (readings,) = conn.execute("SELECT count(*) FROM readings WHERE quality = 'good'").fetchone()
        (power,) = conn.execute("SELECT count(*) FROM power_readings").fetchone()
        (ua_rows,) = conn.execute("SELECT count(*) FROM readings r JOIN devices d ON d.id = r.device_id "
                                  "WHERE d.device_id_str = 'plc-02' AND r.quality = 'good'").fetchone()
        alerts = conn.execute("SELECT alert_type FROM alerts").fetchall()
    assert readings > 200 and power > 20
    assert ua_rows > 10, "the demo reads the plant over OPC UA too"
    assert ("stuck_value",) in alerts, "the demo's frozen-level attack is caught"
