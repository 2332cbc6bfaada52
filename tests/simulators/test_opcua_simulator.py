"""`hacksky-edge simulate --opcua`: the water plant over OPC UA, secured with a certificate made once."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from asyncua import Client

from simulators.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_simulate_opcua_secure_makes_its_certificate_and_refuses_plain_sessions(tmp_path: Path) -> None:
    port, state = free_port(), tmp_path / "state"
    args = [sys.executable, "-m", "agent", "simulate", "--meters", "1", "--meter-port", str(free_port()),
            "--plant-port", str(free_port()), "--opcua", "--opcua-port", str(port), "--opcua-secure",
            "--opcua-state", str(state), "--opcua-user", "edge"]
    proc = subprocess.Popen(args, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT), "HACKSKY_SIM_OPCUA_PASSWORD": "pw"})
    try:
        deadline = time.monotonic() + 30
        while not (state / "server" / "cert.der").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (state / "server" / "key.pem").exists()

        async def plain() -> str:
            client = Client(f"opc.tcp://127.0.0.1:{port}/hacksky/plant", timeout=2)
            for _ in range(50):
                try:
                    endpoints = await client.connect_and_get_server_endpoints()
                    return ",".join(sorted({e.SecurityPolicyUri.rsplit("#", 1)[-1] for e in endpoints}))
                except OSError:
                    await asyncio.sleep(0.2)
            return "unreachable"

        assert asyncio.run(plain()) == "Basic256Sha256", "only secured endpoints are offered"
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    assert proc.returncode == 0
