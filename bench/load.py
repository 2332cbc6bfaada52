"""Load harness: a device farm process, the real agent daemon in its own process, and what they cost.

The agent runs exactly as on a gateway (``python -m agent run -c MAP``); figures come from its
Prometheus endpoint (counter and histogram deltas over a window, p50/p99 as ``histogram_quantile``
computes them) and from ``/proc`` (CPU seconds, RSS) - nothing inside the agent is special-cased.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import yaml
from prometheus_client.parser import text_string_to_metric_families

from simulators.server import free_port

ROOT = Path(__file__).resolve().parents[1]
MARIADB = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the agent and its writer and polling processes)."""
    parents: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(proc.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(parents.get(current, []))
    return tree


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live descendants."""
    return sum(cpu_seconds(p) for p in process_tree(pid))


def memory_mb(pid: int) -> tuple[float, float]:
    """(current RSS, peak RSS) in MB of ``pid`` and its descendants, summed."""
    rss = peak = 0.0
    for member in process_tree(pid):
        status = dict(line.split(":", 1) for line in Path(f"/proc/{member}/status").read_text().splitlines()
                      if ":" in line)
        rss += int(status["VmRSS"].split()[0]) / 1024
        peak += int(status["VmHWM"].split()[0]) / 1024
    return rss, peak


def shared_mariadb_pid() -> int | None:
    """The machine's own mariadbd (the one started without a private --datadir), if readable."""
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and (proc / "comm").read_text().strip() == "mariadbd" and \
                    b"--datadir=" not in (proc / "cmdline").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def terminate(proc: subprocess.Popen[Any], timeout: float) -> None:
    """SIGTERM a child still running, wait ``timeout`` seconds, then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` until true or raise naming ``what``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Farm:
    """``bench.farm`` in its own process: ``devices`` ports, ``points`` float32 each."""

    def __init__(self, devices: int, points: int, workdir: Path) -> None:
        self.devices, self.points = devices, points
        self.ports_file = workdir / f"farm-{uuid.uuid4().hex[:6]}.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.farm", "--devices", str(devices), "--points", str(points),
             "--ports-file", str(self.ports_file)], env=_env(), cwd=ROOT)
        wait_for(lambda: self.ports_file.exists() or self.proc.poll() is not None, 120, "the device farm")
        if self.proc.poll() is not None:
            raise RuntimeError("device farm exited")
        self.ports: list[int] = json.loads(self.ports_file.read_text())

    def stop(self) -> None:
        """SIGTERM and wait."""
        terminate(self.proc, 30)


def device_map(farm: Farm, db_url: str, workdir: Path, interval: float, monitor_port: int,
               extra_central: dict[str, Any] | None = None, extra: dict[str, Any] | None = None,
               limits: bool = True) -> Path:
    """The agent's YAML for the farm: one device per port, every point with limits (checks run) if ``limits``."""
    bounds = {"limits": {"min": -1e9, "max": 1e9}} if limits else {}
    points = [{"name": f"p{i:03d}", "table": "holding", "address": 2 * i, "type": "float32", **bounds}
              for i in range(farm.points)]
    doc = {
        "gateway": {"id": "bench-gw"},
        "central": {"url": db_url, "batch_size": 5000, "flush_interval": "1s", "metrics_interval": "600s",
                    **(extra_central or {})},
        "buffer": {"path": str(workdir / "buffer"), "max_size": "16GiB"},
        "defaults": {"interval": interval, "timeout": "1s"},
        "monitoring": {"port": monitor_port},
        "devices": [{"id": f"dev{i:04d}", "type": "power_meter", "protocol": "modbus", "host": "127.0.0.1",
                     "port": port, "unit_id": 1, "points": points} for i, port in enumerate(farm.ports)],
        **(extra or {}),
    }
    path = workdir / "bench-map.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@dataclass
class Scrape:
    """One read of the agent's /metrics: plain samples summed over labels, histograms by bucket."""

    at: float
    cpu: float
    values: dict[str, float] = field(default_factory=dict)
    buckets: dict[str, dict[float, float]] = field(default_factory=dict)


class AgentProcess:
    """``python -m agent run`` on a generated device map; stop with :meth:`stop` (SIGTERM)."""

    def __init__(self, config: Path, monitor_port: int, workdir: Path) -> None:
        self.port = monitor_port
        self.log = workdir / "agent.log"
        self.proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "-c", str(config)], env=_env(),
                                     cwd=workdir, stdout=subprocess.DEVNULL, stderr=open(self.log, "wb"))
        wait_for(self._ready, 180, f"the agent to be ready (log: {self.log})")

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"agent exited: {self.log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as resp:
                return bool(json.load(resp)["ready"])
        except OSError:
            return False

    def scrape(self) -> Scrape:
        """Counters, gauges and histogram buckets, summed over devices."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=30) as resp:
            body = resp.read().decode()
        out = Scrape(time.monotonic(), tree_cpu_seconds(self.proc.pid))
        for family in text_string_to_metric_families(body):
            for s in family.samples:
                if s.name.endswith("_bucket"):
                    le = float(s.labels["le"])
                    hist = out.buckets.setdefault(s.name[:-7], {})
                    hist[le] = hist.get(le, 0.0) + s.value
                else:
                    out.values[s.name] = out.values.get(s.name, 0.0) + s.value
        return out

    def stop(self) -> None:
        """SIGTERM (the agent drains what it can) and wait."""
        terminate(self.proc, 120)


def quantile(q: float, a: dict[float, float], b: dict[float, float]) -> float:
    """``histogram_quantile(q, b - a)``: linear within the bucket holding the q-th observation."""
    bounds = sorted(b)
    counts = [b[le] - a.get(le, 0.0) for le in bounds]
    total = counts[-1]
    if total <= 0:
        return 0.0
    rank = q * total
    lower, below = 0.0, 0.0
    for le, cum in zip(bounds, counts, strict=True):
        if cum >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(cum - below, 1e-12)
        lower, below = le, cum
    return lower


def window(a: Scrape, b: Scrape) -> dict[str, float]:
    """Rates and percentiles between two scrapes."""
    seconds = b.at - a.at

    def delta(name: str) -> float:
        return b.values.get(name, 0.0) - a.values.get(name, 0.0)

    lag_a, lag_b = a.buckets.get("hacksky_schedule_lag_seconds", {}), b.buckets["hacksky_schedule_lag_seconds"]
    return {
        "seconds": seconds,
        "points_per_s": delta("hacksky_readings_taken_total") / seconds,
        "rows_written_per_s": delta("hacksky_rows_written_total") / seconds,
        "polls_per_s": delta("hacksky_polls_total") / seconds,
        "missed": delta("hacksky_missed_cycles_total"),
        "lag_p50_ms": quantile(0.5, lag_a, lag_b) * 1e3,
        "lag_p99_ms": quantile(0.99, lag_a, lag_b) * 1e3,
        "cpu_percent": 100 * (b.cpu - a.cpu) / seconds,
        "backlog_end": b.values.get("hacksky_buffer_readings", 0.0),
    }


def connect(database: str | None = None, **extra: Any) -> pymysql.connections.Connection:
    """A root connection to the shared MariaDB."""
    return pymysql.connect(database=database, **MARIADB, **extra)  # type: ignore[arg-type]


def database_of(url: str) -> str:
    """The database name of a SQLAlchemy URL from :func:`scratch_database`."""
    return url.rsplit("/", 1)[1]


@contextlib.contextmanager
def scratch_database() -> Iterator[str]:
    """A fresh MariaDB database on the shared server, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"hacksky_bench_{uuid.uuid4().hex[:8]}"
    admin = connect(autocommit=True)
    admin.cursor().execute(f"CREATE DATABASE `{name}`")
    try:
        yield f"mysql+pymysql://root@127.0.0.1:3306/{name}"
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


def warm_up(seconds: float) -> float:
    """Seconds to let a started agent settle before a window of ``seconds``: 10, less for short smoke runs."""
    return min(10.0, max(2.0, seconds))


def run_load(devices: int, points: int, interval: float, seconds: float, db_url: str, workdir: Path,
             warmup: float | None = None, extra_central: dict[str, Any] | None = None,
             extra: dict[str, Any] | None = None, limits: bool = True) -> dict[str, Any]:
    """Farm + agent at one load; figures over ``seconds`` after ``warmup``."""
    farm = Farm(devices, points, workdir)
    agent: AgentProcess | None = None
    try:
        port = free_port()
        agent = AgentProcess(device_map(farm, db_url, workdir, interval, port, extra_central, extra, limits),
                             port, workdir)
        time.sleep(warm_up(seconds) if warmup is None else warmup)
        server = shared_mariadb_pid()
        others = [farm.proc.pid] + ([server] if server else [])
        first, before = agent.scrape(), [cpu_seconds(pid) for pid in others]
        time.sleep(seconds)
        last, after = agent.scrape(), [cpu_seconds(pid) for pid in others]
        rss, peak = memory_mb(agent.proc.pid)
        figures = window(first, last)
        other_cpu = [100 * (b - a) / figures["seconds"] for a, b in zip(before, after, strict=True)]
        return {"devices": devices, "points": points, "interval_s": interval,
                "offered_points_per_s": devices * points / interval, **figures, "rss_mb": rss, "rss_peak_mb": peak,
                "farm_cpu_percent": other_cpu[0], "mariadb_cpu_percent": other_cpu[1] if server else None}
    finally:
        if agent is not None:
            agent.stop()
        farm.stop()
