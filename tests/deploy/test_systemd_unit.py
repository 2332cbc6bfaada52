"""deploy/'s systemd units (the agent, and central maintenance with its timer): hardened, and valid
for systemd itself where systemd-analyze exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
UNIT = DEPLOY / "hacksky-edge.service"
MAINTAIN = DEPLOY / "hacksky-edge-maintain.service"
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM", "ProtectProc": "invisible", "ProcSubset": "pid", "RemoveIPC": "yes",
    "UMask": "0077", "MemoryDenyWriteExecute": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
}


def service_section(unit: Path = UNIT) -> dict[str, list[str]]:
    """Key -> values of [Service], in order (systemd keys may repeat: SystemCallFilter does)."""
    keys: dict[str, list[str]] = {}
    section = None
    for raw in unit.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


@pytest.mark.parametrize("unit", [UNIT, MAINTAIN], ids=lambda p: p.name)
def test_units_set_every_hardening_option(unit: Path) -> None:
    service = service_section(unit)
    wrong = {k: service.get(k) for k, v in HARDENING.items() if service.get(k, [None])[-1] != v}
    assert not wrong, f"expected {HARDENING}"
    assert service["User"] == ["hacksky-edge"] and "@system-service" in service["SystemCallFilter"]


def test_the_agent_unit_stops_the_agent_alone_and_maintenance_runs_once_per_timer() -> None:
    assert service_section()["KillMode"] == ["mixed"], "SIGTERM to the agent alone: it drains its writer process"
    maintain = service_section(MAINTAIN)
    assert maintain["Type"] == ["oneshot"] and maintain["ExecStart"][0].endswith(
        "hacksky-edge central maintain -c /etc/hacksky-edge/central.yaml")


def _verifiable_copies(tmp_path: Path) -> list[Path]:
    """The units with ExecStart pointing at an executable that exists here (verify checks it)."""
    copies = []
    for unit in sorted(DEPLOY.glob("hacksky-edge*.service")) + sorted(DEPLOY.glob("*.timer")):
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace("/opt/hacksky-edge/bin/hacksky-edge", sys.executable))
        copies.append(copy)
    return copies


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_line_of_the_units(tmp_path: Path) -> None:
    # verify exits 0 even on an unknown key or a bad value: it only warns, so no output is the test
    units = _verifiable_copies(tmp_path)
    assert [u.name for u in units] == ["hacksky-edge-maintain.service", "hacksky-edge.service",
                                       "hacksky-edge-maintain.timer"]
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", *map(str, units)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "" and run.stdout.strip() == "", run.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("name", ["hacksky-edge.service", "hacksky-edge-maintain.service"])
def test_systemd_rates_the_units_exposure_ok(tmp_path: Path, name: str) -> None:
    """`systemd-analyze security` scores the agent's unit 1.4 of 10 (0 safest); fail above 2.0."""
    unit = next(u for u in _verifiable_copies(tmp_path) if u.name == name)
    run = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-600:] + run.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_serial_drop_in_opens_serial_ports_alone_and_keeps_the_unit_ok(tmp_path: Path) -> None:
    """deploy/hacksky-edge.service.d/serial.conf, applied as systemd applies a drop-in (its lines last)."""
    drop_in = DEPLOY / "hacksky-edge.service.d" / "serial.conf"
    keys = service_section(drop_in)
    assert keys["PrivateDevices"] == ["no"] and keys["DevicePolicy"] == ["closed"]
    assert all(v.startswith("char-tty") and v.endswith(" rw") for v in keys["DeviceAllow"])
    assert keys["SupplementaryGroups"] == ["dialout"]
    unit = next(u for u in _verifiable_copies(tmp_path) if u.name == "hacksky-edge.service")
    unit.write_text(unit.read_text() + "\n" + drop_in.read_text())
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "" and run.stdout.strip() == "", run.stderr
    run = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20", str(unit)],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-600:] + run.stderr
