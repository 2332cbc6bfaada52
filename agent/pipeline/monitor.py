"""``/health`` and Prometheus ``/metrics`` on the gateway, served from a small HTTP thread.

Figures are read on the agent's event loop (a snapshot coroutine), never from the HTTP thread
directly, so a scrape cannot race the polls. Histograms are updated inline by the agent.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.pipeline.status import Health, Snapshot
from agent.settings import MonitoringConfig

T = TypeVar("T")

log = logging.getLogger(__name__)

#: seconds a scrape waits for the agent's loop before answering 503
SNAPSHOT_TIMEOUT = 5.0
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0)


def _family(kind: str, name: str, doc: str, labels: list[str]) -> CounterMetricFamily | GaugeMetricFamily:
    return (CounterMetricFamily if kind == "counter" else GaugeMetricFamily)(name, doc, labels=labels)


class AgentCollector(Collector):
    """Turns the agent's live snapshot into metric families at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        s = self._snapshot()
        per_device: list[tuple[str, str, str, Literal["polls", "readings", "bad_readings", "missed_cycles"]]] = [
            ("counter", "hacksky_polls", "Polls completed", "polls"),
            ("counter", "hacksky_readings_taken", "Readings taken from the device", "readings"),
            ("counter", "hacksky_bad_readings", "Readings with bad quality", "bad_readings"),
            ("counter", "hacksky_missed_cycles", "Poll cycles missed (previous poll still running)", "missed_cycles"),
        ]
        for kind, name, doc, key in per_device:
            fam = _family(kind, name, doc, ["device"])
            for device, d in s["devices"].items():
                fam.add_metric([device], d[key])
            yield fam
        up = GaugeMetricFamily("hacksky_device_up", "1 when the device answers, 0 when degraded or down",
                               labels=["device", "state"])
        errors = CounterMetricFamily("hacksky_poll_errors", "Failed requests by reason", labels=["device", "reason"])
        for device, d in s["devices"].items():
            up.add_metric([device, d["state"]], 1.0 if d["state"] == "up" else 0.0)
            for reason, count in d["errors"].items():
                errors.add_metric([device, reason], count)
        yield up
        yield errors
        thinned = CounterMetricFamily("hacksky_readings_thinned", "Readings not stored: within their deadband and "
                                      "heartbeat (report by exception)")
        thinned.add_metric([], s["readings_thinned"])
        yield thinned
        b, c = s["buffer"], s["central"]
        gauges = [
            ("hacksky_buffer_readings", "Readings waiting in the disk buffer", b["readings"]),
            ("hacksky_buffer_events", "Events waiting in the disk buffer", b["events"]),
            ("hacksky_buffer_bytes", "Bytes used by the disk buffer", b["bytes"]),
            ("hacksky_buffer_oldest_age_seconds", "Age of the oldest buffered reading", b["oldest_age_s"]),
            ("hacksky_central_up", "1 while the central database accepts writes", float(c["state"] == "up")),
            ("hacksky_central_stalled", "1 while buffered records are not moving although central answers",
             float(bool(c.get("stalled")))),
            ("hacksky_alerts_open", "Alerts this gateway holds open", s["open_alerts"]),
        ]
        offset = c.get("clock_offset_s")
        if offset is not None:
            gauges.append(("hacksky_clock_offset_seconds", "This gateway's clock minus the central database's",
                           offset))
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        counters = [
            ("hacksky_rows_written", "Readings written to the central database", c["rows_written"]),
            ("hacksky_events_written", "Events (alerts, power rows...) written centrally", c["events_written"]),
            ("hacksky_write_errors", "Failed central writes", c["write_errors"]),
            ("hacksky_readings_dropped", "Readings dropped because the buffer was full", b["dropped"]),
            ("hacksky_records_quarantined", "Records the central database refused", c["quarantined"]),
            ("hacksky_writer_restarts", "Times the writer process died and was started again", c["writer_restarts"]),
            ("hacksky_polling_restarts", "Times a polling process died and was started again",
             s["polling"]["restarts"]),
            ("hacksky_central_conflicts_retried", "Central transactions tried again after a deadlock or a Galera "
             "certification conflict", c.get("conflicts_retried", 0)),
            ("hacksky_central_failovers", "Times the writer moved to another database node (central.failover)",
             c.get("failovers", 0)),
        ]
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        yield from _output_metrics(s)
        det = s.get("detection")
        if det:
            yield CounterMetricFamily("hacksky_detection_rows", "Rows scored", value=det["rows_scored"])
            yield CounterMetricFamily("hacksky_detection_alarm_rows", "Scored rows in alarm", value=det["alarms"])
            yield CounterMetricFamily("hacksky_detections_opened", "Attack detections opened", value=det["opened"])
            yield GaugeMetricFamily("hacksky_detection_open", "1 while an attack detection is open",
                                    value=float(det["open_detection"] is not None))
            yield GaugeMetricFamily("hacksky_detection_score", "Latest detector score (>= 1 is an alarm)",
                                    value=det["score"] or 0.0)


def _output_metrics(s: Snapshot) -> Iterator[Metric]:
    """Per output (``outputs:``): connected, published, pending."""
    up = GaugeMetricFamily("hacksky_output_up", "1 while the output accepts what the gateway sends", labels=["output"])
    pending = GaugeMetricFamily("hacksky_output_pending_readings", "Readings the output has not acknowledged",
                                labels=["output"])
    published = CounterMetricFamily("hacksky_output_published_readings", "Readings the output acknowledged",
                                    labels=["output"])
    errors = CounterMetricFamily("hacksky_output_errors", "Failed deliveries to the output", labels=["output"])
    oldest = GaugeMetricFamily("hacksky_output_oldest_pending_age_seconds",
                               "Age of the oldest reading the output has not acknowledged", labels=["output"])
    refused = CounterMetricFamily("hacksky_output_commands_refused",
                                  "Commands received on the output and refused (the gateway never writes to devices)",
                                  labels=["output"])
    dropped = CounterMetricFamily("hacksky_output_dropped_readings",
                                  "Readings the output will never get: the buffer was full", labels=["output"])
    for name, o in s.get("outputs", {}).items():
        refused.add_metric([name], o["counters"].get("commands_refused", 0))
        dropped.add_metric([name], o.get("dropped", 0))
        up.add_metric([name], float(o["state"] == "up"))
        pending.add_metric([name], o["pending"])
        oldest.add_metric([name], o.get("oldest_age_s", 0.0))
        published.add_metric([name], o["readings"])
        errors.add_metric([name], o["errors"])
    yield from (up, pending, published, errors, oldest, refused, dropped)


class Monitor:
    """Owns the registry, the agent's histograms and the HTTP thread."""

    def __init__(self, cfg: MonitoringConfig, snapshot: Callable[[], Coroutine[Any, Any, Snapshot]],
                 health: Callable[[], Coroutine[Any, Any, Health]]) -> None:
        self.cfg = cfg
        self.registry = CollectorRegistry()
        # gateway-wide, not per device: 500 devices x 2 x 17 buckets made a scrape take seconds
        # (per-device p50/p99 are in the status file and `hacksky-edge status`)
        self.poll_seconds = Histogram("hacksky_poll_duration_seconds", "Time to poll a device",
                                      buckets=LATENCY_BUCKETS, registry=self.registry)
        self.lag_seconds = Histogram("hacksky_schedule_lag_seconds", "Poll start after its scheduled time",
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        self.write_seconds = Histogram("hacksky_write_duration_seconds", "Time to write one pack centrally",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self._snapshot, self._health = snapshot, health
        self._loop: asyncio.AbstractEventLoop | None = None
        self.registry.register(AgentCollector(lambda: self._on_loop(self._snapshot)))
        self._server: ThreadingHTTPServer | None = None
        self.port = 0

    def _on_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(make(), self._loop).result(SNAPSHOT_TIMEOUT)

    def start(self) -> None:
        """Bind and serve; a port in use is logged, and the agent runs on without endpoints."""
        if not self.cfg.enabled:
            return
        self._loop = asyncio.get_running_loop()
        try:
            self._server = ThreadingHTTPServer((self.cfg.listen, self.cfg.port), self._handler())
        except OSError as exc:
            log.error("cannot serve /health and /metrics on %s:%d (%s); running without them",
                      self.cfg.listen, self.cfg.port, exc)
            return
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="monitor-http", daemon=True).start()
        log.info("health and metrics on http://%s:%d/health and /metrics", self.cfg.listen, self.port)

    def stop(self) -> None:
        """Stop serving (called before the loop stops)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        monitor = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                try:
                    if self.path.split("?")[0] == "/metrics":
                        self._send(200, CONTENT_TYPE_LATEST, generate_latest(monitor.registry))
                    elif self.path.split("?")[0] in ("/health", "/healthz"):
                        health = monitor._on_loop(monitor._health)
                        self._send(200 if health["ready"] else 503, "application/json",
                                   json.dumps(health).encode())
                    elif self.path == "/health/live":
                        self._send(200, "application/json", b'{"live": true}')
                    else:
                        self._send(404, "text/plain", b"not found: try /health or /metrics\n")
                except TimeoutError:
                    self._send(503, "application/json", b'{"ready": false, "error": "agent loop not answering"}')

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                log.debug("monitor http: " + format, *args)

        return Handler
