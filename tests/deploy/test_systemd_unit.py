"""deploy/hacksky-edge.service: hardened, and valid for systemd itself where systemd-analyze exists."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "deploy" / "hacksky-edge.service"
HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "CapabilityBoundingSet": "", "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM", "ProtectProc": "invisible", "ProcSubset": "pid", "RemoveIPC": "yes",
    "UMask": "0077", "MemoryDenyWriteExecute": "yes", "RestrictSUIDSGID": "yes", "LockPersonality": "yes",
}


def service_section() -> dict[str, list[str]]:
    """Key -> values of [Service], in order (systemd keys may repeat: SystemCallFilter does)."""
    keys: dict[str, list[str]] = {}
    section = None
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line
        elif section == "[Service]":
            key, _, value = line.partition("=")
            keys.setdefault(key.strip(), []).append(value.strip())
    return keys


def test_unit_sets_every_hardening_option() -> None:
    service = service_section()
    wrong = {k: service.get(k) for k, v in HARDENING.items() if service.get(k, [None])[-1] != v}
    assert not wrong, f"expected {HARDENING}"
    assert service["User"] == ["hacksky-edge"] and "@system-service" in service["SystemCallFilter"]
    assert service["KillMode"] == ["mixed"], "SIGTERM to the agent alone: it drains its writer process itself"


def _verifiable_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at an executable that exists here (verify checks it)."""
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/hacksky-edge/bin/hacksky-edge", sys.executable))
    return copy


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_every_line_of_the_unit(tmp_path: Path) -> None:
    # verify exits 0 even on an unknown key or a bad value: it only warns, so no output is the test
    run = subprocess.run(["systemd-analyze", "verify", "--man=no", str(_verifiable_copy(tmp_path))],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0 and run.stderr.strip() == "" and run.stdout.strip() == "", run.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_rates_the_unit_exposure_ok(tmp_path: Path) -> None:
    """`systemd-analyze security` scores 1.4 of 10 (0 safest); fail above 2.0."""
    run = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=20",
                          str(_verifiable_copy(tmp_path))], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout[-600:] + run.stderr
