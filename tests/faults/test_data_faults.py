"""Bad data: non-finite and out-of-range values, poison rows, and 1,000 malformed device maps."""

from __future__ import annotations

import asyncio
import copy
import time
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.buffer.disk import DiskBuffer
from agent.configload import ConfigError, load_config_text
from agent.pipeline.service import Agent
from drivers.base import Reading
from simulators.server import ModbusSimulator, SimulatorThread
from simulators.store import RegisterImage
from tests.faults.conftest import FaultRow
from tests.helpers import async_wait_until, device_map, query, run_agent


class BadValues:
    """A device whose registers hold NaN, infinities and integers too large for a double."""

    def __init__(self) -> None:
        self.image = RegisterImage()
        self.image.put("holding", 0, float("nan"), "float32")
        self.image.put("holding", 2, float("inf"), "float64")
        self.image.put("holding", 6, float("-inf"), "float32")
        self.image.put("holding", 8, 2**63 + 12345, "uint64")
        self.image.put("holding", 12, 1e308, "float64")
        self.image.put("holding", 16, 230.5, "float32")

    def refresh(self, now: float) -> None:
        """Constant."""


def test_non_finite_and_out_of_range_values_are_bad_quality_not_a_blocked_queue(
        mariadb_url: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    sim = ModbusSimulator({1: BadValues()})
    points = [{"name": "nan", "address": 0, "type": "float32"},
              {"name": "inf", "address": 2, "type": "float64"},
              {"name": "ninf", "address": 6, "type": "float32"},
              {"name": "huge", "address": 8, "type": "uint64"},
              {"name": "overflow", "address": 12, "type": "float64", "scale": 10},
              {"name": "fine", "address": 16, "type": "float32"}]
    with SimulatorThread([sim]):
        async def scenario(agent: Agent) -> None:
            await async_wait_until(lambda: agent.stats.rows_written >= 60)

        agent = run_agent(device_map("gw-values", mariadb_url, str(tmp_path / "buf"), [
            {"id": "odd", "host": "127.0.0.1", "port": sim.port, "points": points}]), scenario)
    rows = query(mariadb_url, "SELECT point, quality, count(*), max(value) FROM readings GROUP BY point, quality")
    got = {(p, q): (n, v) for p, q, n, v in rows}
    assert {k for k in got} == {("nan", "bad:not_finite"), ("inf", "bad:not_finite"), ("ninf", "bad:not_finite"),
                                ("huge", "bad:out_of_range"), ("overflow", "bad:not_finite"), ("fine", "good")}
    assert all(v is None for (p, _), (_, v) in got.items() if p != "fine") and got[("fine", "good")][1] == 230.5
    total = sum(n for n, _ in got.values())
    assert total == agent.stats.readings_taken
    fault_report.append(FaultRow("Values NaN, +/-Inf, > 2^53, overflow after scale", "device registers",
                                 total, total, 0, 0, None, "stored with NULL value and bad:not_finite / "
                                 "bad:out_of_range quality; queue never blocked"))


def test_poison_row_is_quarantined_and_the_rest_of_the_batch_lands(
        mariadb_url: str, tmp_path: Path, fault_report: list[FaultRow]) -> None:
    buffer_dir = tmp_path / "buf"
    buf = DiskBuffer(buffer_dir, 10**9)
    t0 = 1_760_000_000_000_000
    good = [Reading("meter-01", "v", t0 + i, float(i)) for i in range(3000)]
    poison = [Reading("meter-01", "label", t0 + 7, None, "x" * 300),  # value_text is VARCHAR(255)
              Reading("meter-01", "label", t0 + 2500, None, "y" * 1000)]
    buf.put(good[:7] + poison[:1] + good[7:2500] + poison[1:] + good[2500:])
    buf.close()

    async def scenario(agent: Agent) -> None:
        await async_wait_until(lambda: agent.stats.quarantined == 2 and agent.delivery.buffer is not None
                               and agent.delivery.buffer.reading_rows == 0)
        await asyncio.sleep(0.5)

    started = time.monotonic()
    agent = run_agent(device_map("gw-poison", mariadb_url, str(buffer_dir), [], batch_size=1000), scenario)
    elapsed = time.monotonic() - started
    stored = query(mariadb_url, "SELECT count(*), sum(value) FROM readings")[0]
    assert stored[0] == 3000 and stored[1] == sum(range(3000))
    alerts = query(mariadb_url, "SELECT count(*) FROM alerts WHERE alert_type = 'records_quarantined'")
    assert alerts[0][0] == 2
    held = DiskBuffer(buffer_dir, 10**9)
    quarantined = held.quarantined()
    held.close()
    assert [(k, len(p["text"])) for k, p, _ in quarantined] == [("reading", 300), ("reading", 1000)]
    assert all("1406" in e or "too long" in e for _, _, e in quarantined)
    assert agent.stats.quarantined == 2
    fault_report.append(FaultRow("Poison rows (text longer than the column)", "2 rows in a 3,002-row backlog",
                                 3002, 3000, 0, 0, elapsed, "batch bisected; 2 rows quarantined in the buffer "
                                 "with the MySQL error and alerted; 3,000 good rows landed"))


VALID = yaml.safe_load("""
gateway: {id: gw1}
central: {url: 'sqlite:///x.db', batch_size: 100}
buffer: {path: buf, max_size: 10MiB}
defaults: {interval: 1s, timeout: 500ms}
devices:
  - id: m1
    host: 127.0.0.1
    port: 5020
    points:
      - {name: v, table: holding, address: 0, type: float32, limits: {min: 0, max: 10}}
      - {name: s, table: holding, address: 4, type: string, length: 4}
      - {name: b, table: coil, address: 0, type: bool}
""")
_junk = st.one_of(st.none(), st.booleans(), st.integers(-70000, 70000), st.floats(allow_nan=True),
                  st.text(max_size=12), st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=4),
                                                                                            st.integers(), max_size=2))


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_maps(draw: st.DrawFn) -> str:
    doc = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(_paths(doc)[1:]))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "unknown_key"]))
        if action == "replace":
            parent[path[-1]] = draw(_junk)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "unknown_key" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=6))] = draw(_junk)
    text = yaml.dump(doc, Dumper=yaml.CSafeDumper)
    if draw(st.booleans()) and draw(st.booleans()):
        cut = draw(st.integers(0, len(text)))
        text = text[:cut] + draw(st.sampled_from(["{", "[", ": :", "\t", "'", "&a *b", "- - x"])) + text[cut:]
    return text


def test_a_thousand_malformed_maps_give_located_errors_never_tracebacks(fault_report: list[FaultRow]) -> None:
    counts = {"valid": 0, "refused": 0}

    @settings(max_examples=1000, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(text=mutated_maps())
    def check(text: str) -> None:
        lines = text.count("\n") + 1
        try:
            load_config_text(text, "fuzz.yaml")
            counts["valid"] += 1
        except ConfigError as exc:
            counts["refused"] += 1
            assert exc.issues
            for issue in exc.issues:
                assert str(issue).startswith("fuzz.yaml:") and 1 <= issue.line <= lines + 1 and issue.message

    check()
    total = sum(counts.values())
    assert total >= 1000 and counts["refused"] > 500
    fault_report.append(FaultRow("Malformed device maps (hypothesis)", f"{total} mutated YAML maps", total, total,
                                 0, 0, None, f"{counts['refused']} refused with file:line:column errors, "
                                 f"{counts['valid']} valid; 0 tracebacks"))
