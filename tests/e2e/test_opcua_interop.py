"""The agent against an independent OPC UA server (node-opcua, not asyncua), security on."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.pipeline.service import Agent
from drivers.opcua.security import make_certificate
from simulators.server import free_port
from tests.helpers import async_wait_until, device_map, query, run_agent

INTEROP = Path(__file__).resolve().parents[1] / "interop"


@pytest.fixture(scope="session")
def node_opcua() -> Path:
    """node-opcua installed from tests/interop/package.json (npm registry), once per machine."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for the OPC UA interoperability test")
    if not (INTEROP / "node_modules" / "node-opcua-server").exists():
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=INTEROP, check=True,
                       timeout=600, capture_output=True)
    return INTEROP


@pytest.fixture
def server(node_opcua: Path, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(["node", "opcua_server.js", str(port), str(tmp_path / "server-pki")], cwd=node_opcua,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "UA_PASSWORD": "interop-pw"})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("READY"):
                break
        else:
            pytest.fail("node-opcua server did not start")
        yield f"opc.tcp://127.0.0.1:{port}/interop"
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize("mode", ["poll", "subscribe"])
def test_signed_and_encrypted_session_with_username_on_node_opcua(server: str, mariadb_url: str, tmp_path: Path,
                                                                  mode: str) -> None:
    cert, key = make_certificate(tmp_path / "client", "urn:hacksky-edge:gw-interop")
    (tmp_path / "pass").write_text("interop-pw\n")
    device = {"id": "node-plc", "type": "plc", "protocol": "opcua", "endpoint": server, "mode": mode,
              "interval": "500ms", "timeout": "450ms", "username": "edge", "password_file": str(tmp_path / "pass"),
              "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "certificate": str(cert),
                           "private_key": str(key), "trust_dir": str(tmp_path / "trusted"),
                           "trust_on_first_use": True},
              "points": [{"name": "level", "node": "nsu=urn:hacksky:interop:node-opcua;s=Plant.Tank1.Level"},
                         {"name": "level_by_path", "path": "/Objects/1:Plant/1:Tank1/1:Level"}]}

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.rows_written >= 10, timeout=40)

    agent = run_agent(device_map("gw-interop", mariadb_url, str(tmp_path / "buf"), [device]), scenario)
    assert agent.drivers["node-plc"].health.state == "up"
    assert len(list((tmp_path / "trusted").iterdir())) == 1, "the server certificate was pinned on first use"
    levels = [v for (v,) in query(mariadb_url, "SELECT value FROM readings WHERE point = 'level' "
                                               "AND quality = 'good' ORDER BY ts")]
    assert len(levels) >= 4 and levels == sorted(levels) and levels[-1] > levels[0], "the rising level, in order"
