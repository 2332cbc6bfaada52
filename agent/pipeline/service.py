"""The agent: scheduled polls -> checks -> durable buffer -> batched central writes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import math
import os
import sqlite3
import sys
import time
from dataclasses import dataclass
from typing import Any

from agent.central.engine import nodes_of, redacted, resolve_url
from agent.checks import AlertTracker, CheckEngine, Condition, build_checks
from agent.detect.meters import MeterDetection
from agent.detect.runner import DetectionRunner, load_model
from agent.pipeline.child import SPLIT_FROM_POINTS_PER_S
from agent.pipeline.delivery import Delivery
from agent.pipeline.fleet import GatewayReporter, clock_condition, clock_uncertain, reload_summary
from agent.pipeline.monitor import Monitor
from agent.pipeline.outputs import DeliveryGroup, output_deliveries
from agent.pipeline.power import PowerSampler
from agent.pipeline.scheduler import PollScheduler
from agent.pipeline.shards import ShardPool, worker_count
from agent.pipeline.statefile import write_state
from agent.pipeline.stats import AgentStats, DeviceStats, OutputStats
from agent.pipeline.status import DetectionSnapshot, DeviceSnapshot, Health, OutputSnapshot, Snapshot
from agent.pipeline.systemd import notify, watchdog_interval
from agent.pipeline.thinning import Thinning
from agent.pipeline.writer_link import WriterLink
from agent.records import DeviceInfo, Event, alert_event, metric_event, status_event
from agent.settings import AgentConfig, ResolvedDevice
from agent.sinks.build import build_sink
from agent.sources import SourceContext, source_for
from drivers.base import DeviceHealth, Driver, Reading, now_us
from drivers.modbus import ConnectionPool

log = logging.getLogger(__name__)

STATUS_EVERY = 2.0
#: the meters' learned state is saved with the buffer when a check finished learning, else this often (s)
SAVE_LEARNING_EVERY = 900.0
SHUTDOWN_DRAIN_SECONDS = 10.0
STATUS_OF_HEALTH = {"up": "online", "degraded": "degraded", "down": "offline", "unknown": "unknown"}
#: A device that keeps answering gets its central ``last_seen`` refreshed this often (one
#: device_status event), not once per poll.
LAST_SEEN_EVERY_US = 30_000_000
#: Polls in a row a device must stay degraded before its ``device_degraded`` alert opens.
DEGRADED_ALERT_POLLS = 3
#: Polls in a row on schedule after which a device's next missed cycle is logged again.
ON_TIME_POLLS_TO_REARM = 10
#: How long a thread may hold the GIL while another waits for it (Python's default: 5 ms). The
#: event loop gives the GIL up at every socket call; with the writer thread busy rendering SQL,
#: each such call cost the loop up to 5 ms, and a poll's start waited for several in a row. 1 ms:
#: schedule lag p99 at 500 x 20 into MariaDB from 18-20 to 11-15 ms at the same CPU, A/B in one hour
#: (docs/performance.md, "The scheduler, the GIL and issue #13's table again").
SWITCH_INTERVAL = 0.001


def device_info(dev: ResolvedDevice) -> DeviceInfo:
    """How a configured device is registered centrally and announced by outputs."""
    c = dev.config
    return DeviceInfo(c.id, c.name, c.type, c.location, c.protocol, c.address, source_for(c.protocol).points(c))


@dataclass
class DeviceReport:
    """What the agent last reported of one device: status event, degraded run, late polls."""

    status: str = ""  # the "status/reason" the last device_status event carried
    status_us: int = 0  # when it was queued
    seen_us: int = 0  # the last_seen it carried
    degraded_polls: int = 0  # consecutive
    late_logged: bool = False  # a missed cycle was logged; quiet until on schedule again
    missed_since_poll: int = 0
    on_time_polls: int = 0


class Agent:
    """Runs one gateway's device map until asked to stop."""

    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.devices = {d.id: d for d in cfg.enabled_devices()}
        self.stats = AgentStats()
        self.device_stats = {d: DeviceStats() for d in self.devices}
        self.pool = ConnectionPool()
        #: points per second the map offers: whether ``auto`` splits the agent into processes
        self.offered = sum(d.points_per_second for d in self.devices.values())
        workers = worker_count(cfg.workers, self.offered)
        self.shards = ShardPool(workers, cfg.gateway.id) if workers > 1 else None
        self.drivers: dict[str, Driver] = {}
        self.checks = CheckEngine(build_checks(cfg))
        self.power = PowerSampler([d.config for d in self.devices.values()])
        self.meters = MeterDetection([d.config for d in self.devices.values()])
        self.thinning = Thinning([d.config for d in self.devices.values()])
        self.tracker = AlertTracker()
        self.detection: DetectionRunner | None = None
        self.central_url = redacted(resolve_url(cfg.central.url, None))
        self.delivery = self._delivery([device_info(d) for d in self.devices.values()])
        self.monitor = Monitor(cfg.monitoring, self.metrics_snapshot, self.health)
        self.scheduler = PollScheduler(self._poll, self._missed)
        self.fleet = GatewayReporter(cfg.map_hash(), self.stats.started, cfg.central.metrics_interval)
        self._clock_off = False  # the clock differs from central's past central.max_clock_offset
        #: ``host:port`` of the central url's node and its failover nodes (central settings need a restart)
        self._central_nodes = ([f"{host}:{port}" for host, port in nodes_of(cfg.central)]
                               if cfg.central.failover else [])
        self._pending_readings: list[Reading] = []
        self._pending_events: list[Event] = []
        self._state_dirty = False
        #: when the meters' learned state was last saved (monotonic; -inf: at the next commit)
        self._learning_saved = -math.inf
        self._reports: dict[str, DeviceReport] = {}
        self._in_flight = 0
        self._crashed: set[str] = set()
        self._commit_failing = False
        self._idle = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._put_task: asyncio.Future[Any] | None = None
        self.ready = asyncio.Event()

    def _delivery(self, devices: list[DeviceInfo]) -> Delivery | DeliveryGroup | WriterLink:
        """The writer: in a process of its own (``central.writer``, see :data:`SPLIT_FROM_POINTS_PER_S`)
        or on threads of this one; with ``outputs:``, one delivery per output beside the central one."""
        cfg = self.cfg
        observe = self._observe_write
        writer = cfg.central.writer
        if writer == "process" or (writer == "auto" and self.offered >= SPLIT_FROM_POINTS_PER_S):
            return WriterLink(cfg, devices, self.stats, on_quarantine=self._quarantined, on_write=observe)
        central = cfg.central
        delivery = Delivery(cfg.buffer, build_sink(central, cfg.gateway.id), devices, self.stats,
                            batch_size=central.batch_size, flush_interval=central.flush_interval,
                            connections=central.parallel_writes(),
                            on_quarantine=self._quarantined, on_write=observe)
        if not cfg.outputs:
            return delivery
        outputs = output_deliveries(cfg.buffer, cfg.outputs, cfg.gateway.id, devices, self.stats,
                                    delivery.buffer_thread)
        return DeliveryGroup(delivery, outputs)

    def _observe_write(self, seconds: float) -> None:
        self.monitor.write_seconds.observe(seconds)

    def _make_driver(self, dev: ResolvedDevice) -> Driver:
        """The driver of ``dev``, built by the source registered for its protocol (in a polling
        process when there are several)."""
        if self.shards is not None:
            return self.shards.driver(dev)
        context = SourceContext(pool=self.pool, gateway=self.cfg.gateway.id)
        return source_for(dev.config.protocol).driver(dev.config, dev, context)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll, check, buffer and deliver until ``stop`` is set; then flush and exit."""
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        try:
            await self._run(stop)
        finally:
            sys.setswitchinterval(switch_interval)

    async def _run(self, stop: asyncio.Event) -> None:
        buffer = await self.delivery.open()
        self.tracker = AlertTracker(await self.delivery.in_buffer(buffer.load_state, "open_alerts"))
        self.meters = MeterDetection([d.config for d in self.devices.values()],
                                     state=await self.delivery.in_buffer(buffer.load_state, "open_meter_attacks"),
                                     learned=await self.delivery.in_buffer(buffer.load_state, "meter_learning"))
        self._learning_saved = time.monotonic()
        if self.cfg.detection is not None:
            model = await asyncio.to_thread(load_model, self.cfg.detection)
            self.detection = DetectionRunner(self.cfg.detection, [d.config for d in self.devices.values()], model,
                                             await self.delivery.in_buffer(buffer.load_state, "open_attacks"))
        if buffer.salvage is not None:
            self.incident("buffer_corrupt", "high", "edge buffer file was damaged", buffer.salvage.summary())
        self.drivers = {d: self._make_driver(dev) for d, dev in self.devices.items()}
        if self.shards is not None:
            await self.shards.start()
        workers = [
            asyncio.create_task(self.delivery.run(stop), name="writer"),
            asyncio.create_task(self._commit_loop(stop), name="committer"),
            asyncio.create_task(self._status_loop(stop), name="status"),
            asyncio.create_task(self._metrics_loop(stop), name="metrics"),
        ]
        if self.detection is not None and self.detection.clock is None:
            workers.append(asyncio.create_task(self._detection_loop(stop), name="detection"))
        self.scheduler.start([(d, dev.interval) for d, dev in self.devices.items()])
        self._pending_events.append(self.gateway_beat())
        self.monitor.start()
        log.info("agent %s polling %d devices, writing to %s, buffer %s", self.cfg.gateway.id,
                 len(self.devices), self.central_url, self.cfg.buffer.path)
        # Everything made so far (config, drivers, jobs, libraries) lives as long as the agent:
        # out of the cyclic GC's reach, a full collection no longer stops polling for ~0.3 s
        # every few seconds (500 devices).
        gc.freeze()
        notify("READY=1")
        self.ready.set()
        try:
            await stop.wait()
        finally:
            await self._shutdown(workers)

    async def _shutdown(self, workers: list[asyncio.Task[None]]) -> None:
        notify("STOPPING=1")
        self.scheduler.pause()
        await asyncio.sleep(0)  # polls the scheduler launched just before the pause take their first step
        deadline = time.monotonic() + max((d.timeout for d in self.devices.values()), default=1.0) * 2 + 1
        while self._in_flight and time.monotonic() < deadline:
            self._idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), timeout=deadline - time.monotonic())
            await asyncio.sleep(0)
        if self._in_flight:
            log.warning("%d polls still running at shutdown; their readings are lost", self._in_flight)
        self.scheduler.shutdown()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        if self._put_task is not None and not self._put_task.done():
            await asyncio.gather(self._put_task, return_exceptions=True)  # a commit cut off mid-put
        self._pending_events.extend(self._stopped_events())  # before the drain: so central hears it now
        self._pending_events.append(self.gateway_beat(stopped=True))
        self._gateway_conditions()
        self._learning_saved = -math.inf  # what the meters learned since the last save is kept
        await self._commit()
        delivered = await self.delivery.drain(time.monotonic() + SHUTDOWN_DRAIN_SECONDS)
        assert self.delivery.buffer is not None
        buffer = self.delivery.buffer
        log.info("agent stopped: %d readings taken, %d written, %d left in the buffer%s",
                 self.stats.readings_taken, self.stats.rows_written, buffer.reading_rows,
                 "" if delivered else " (delivered on next start)")
        for stats in self.device_stats.values():
            stats.update_percentiles()
        self._write_status()
        for driver in self.drivers.values():
            await driver.close()
        for task in self._background:
            task.cancel()
        if self.shards is not None:
            await self.shards.close()
        self.pool.close_all()
        self.monitor.stop()
        await self.delivery.close()

    async def reload(self, new: AgentConfig) -> dict[str, list[str]]:
        """Apply a re-read device map per device: unchanged devices keep polling untouched.

        Added devices start, removed ones stop (their open alerts close), changed ones restart;
        the buffer and everything in it stay. Gateway, central, buffer and monitoring settings
        need a restart and are kept as they are.
        """
        old = self.cfg
        fixed = [name for name in ("gateway", "central", "buffer", "monitoring", "workers")
                 if getattr(old, name) != getattr(new, name)]
        if fixed:
            log.warning("reload: %s changed; that takes effect at the next restart", ", ".join(fixed))
        new = new.model_copy(update={name: getattr(old, name) for name in fixed})
        wanted = {d.id: d for d in new.enabled_devices()}
        removed = [i for i in self.devices if i not in wanted]
        added = [i for i in wanted if i not in self.devices]
        changed = [i for i in wanted if i in self.devices and wanted[i] != self.devices[i]]
        retired = []
        for device_id in removed + changed:
            self.scheduler.remove(device_id)
            retired.append(self.drivers.pop(device_id))
        self.cfg, self.devices = new, wanted
        self.checks = self.checks.reconfigured(new)
        self.power = PowerSampler([d.config for d in wanted.values()], self.power)
        self.meters = MeterDetection([d.config for d in wanted.values()], self.meters)
        self._pending_events.extend(self.meters.retired(now_us()))
        self.thinning = Thinning([d.config for d in wanted.values()], self.thinning)
        for device_id in removed:
            self.device_stats.pop(device_id, None)
            self._reports.pop(device_id, None)
            self._pending_events.append(status_event({
                "device": device_id, "status": "unknown", "reason": "removed from the device map", "ts_us": now_us()}))
            self._track([Condition(key, active=False) for key in self.tracker.open
                         if key.split("/")[1:2] == [device_id]])
        for device_id in added + changed:
            self.drivers[device_id] = self._make_driver(wanted[device_id])
            self.device_stats.setdefault(device_id, DeviceStats())
            self.scheduler.add(device_id, wanted[device_id].interval)
        self.delivery.update_devices([device_info(d) for d in wanted.values()])
        if new.detection != old.detection:
            await self._reload_detection()
        if retired:  # after their last poll: a poll still running holds its own reference
            grace = max((d.timeout for d in self.devices.values()), default=1.0) * 2 + 1
            task = asyncio.create_task(self._close_later(retired, grace), name="retire-drivers")
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        log.info("reload applied: %d added, %d removed, %d changed, %d unchanged", len(added), len(removed),
                 len(changed), len(wanted) - len(added) - len(changed))
        result = {"added": added, "removed": removed, "changed": changed, "restart_needed": fixed}
        self.fleet.reloaded(new.map_hash(), reload_summary(result))
        self._pending_events.append(self.gateway_beat())
        return result

    @staticmethod
    async def _close_later(drivers: list[Driver], delay: float) -> None:
        await asyncio.sleep(delay)
        for driver in drivers:
            await driver.close()

    async def _reload_detection(self) -> None:
        det = self.cfg.detection
        state = self.detection.incidents.state() if self.detection else None
        self.detection = None
        if det is not None:
            model = await asyncio.to_thread(load_model, det)
            self.detection = DetectionRunner(det, [d.config for d in self.devices.values()], model, state)

    async def _poll(self, device_id: str, lag: float) -> None:
        """One poll, counted in flight until its readings are handed over (and committed, with
        ``commit_interval: 0``) so that shutdown waits for it instead of cancelling it."""
        self._in_flight += 1
        try:
            await self._poll_once(device_id, lag)
        finally:
            self._in_flight -= 1
            if not self._in_flight:
                self._idle.set()

    async def _poll_once(self, device_id: str, lag: float) -> None:
        driver = self.drivers[device_id]
        stats = self.device_stats[device_id]
        started = time.perf_counter()
        try:
            readings = await driver.read()
        except Exception:  # a driver bug must not kill the schedule: log once per device
            if device_id not in self._crashed:
                self._crashed.add(device_id)
                log.exception("device %s: driver failed; will keep trying every cycle", device_id)
            return
        self._crashed.discard(device_id)
        latency = time.perf_counter() - started
        stats.latency_s.append(latency)
        stats.lag_s.append(lag)
        self.monitor.poll_seconds.observe(latency)
        self.monitor.lag_seconds.observe(lag)
        stats.polls += 1
        stats.readings += len(readings)
        stats.bad_readings += sum(1 for r in readings if not r.good)
        self.stats.readings_taken += len(readings)
        self._ingest(device_id, readings, driver)
        self._count_on_time(device_id)
        if not self.cfg.buffer.commit_interval:
            await self._commit()

    def _ingest(self, device_id: str, readings: list[Reading], driver: Driver) -> None:
        # a device a reload removed while this poll was in flight: its readings are kept, but no status
        # or alert may bring the device back after its "removed" status
        if device_id in self.devices:
            events = self._events_of(device_id, readings, driver)
            self._state_dirty |= any(e.kind in ("alert", "attack") for e in events)
            self._pending_events.extend(events)
        stored = self.thinning.keep(device_id, readings)
        self.stats.readings_thinned += len(readings) - len(stored)
        self._pending_readings.extend(clock_uncertain(stored) if self._clock_off else stored)

    def _events_of(self, device_id: str, readings: list[Reading], driver: Driver) -> list[Event]:
        """What one poll's readings raise: alerts, the power row, a status change, detections."""
        ts = now_us()
        health = driver.health
        conditions = self.checks.evaluate(device_id, readings) + self._degraded_conditions(device_id, health)
        events = self.tracker.process(conditions, ts)
        meter_events = self.meters.observe(device_id, readings)  # first: it scores the load profile
        sample = self.power.sample(device_id, readings, self.meters.load_score(device_id))
        if sample is not None:
            events.append(sample)
        events.extend(meter_events)
        status = self._status_event(device_id, health, ts)
        if status is not None:
            events.append(status)
        if self.detection is not None:
            tick = self.detection.observe(device_id, readings)
            if tick is not None:
                events.extend(self.detection.score(ts, tick))
        return events

    def incident(self, alert_type: str, severity: str, title: str, message: str) -> None:
        """An alert for a one-off event (no condition to clear it): an operator resolves it."""
        ts = now_us()
        self._pending_events.append(alert_event({
            "op": "open", "key": f"incident/{alert_type}/{ts}", "ts_us": ts, "device": None, "point": None,
            "alert_type": alert_type, "severity": severity, "title": title, "message": message,
            "value": None, "system": "edge-gateway"}))

    def _quarantined(self, refused: list[tuple[Reading | Event, str]]) -> None:
        self.incident("records_quarantined", "high", f"central database refused {len(refused)} records",
                      f"{len(refused)} records quarantined in the edge buffer; first error: {refused[0][1]}")

    def _gateway_conditions(self) -> None:
        """Gateway-level conditions (central reachability) fed through the alert tracker."""
        down = self.stats.central_state == "down"
        condition = Condition(
            key="central/unavailable", active=down, alert_type="central_unavailable", severity="high",
            title="central database unreachable: buffering at the edge",
            message=f"writes failing since the last flush: {self.stats.central_error}" if down else "")
        self._track([condition])

    def _track(self, conditions: list[Condition]) -> None:
        """Alert events for gateway-level conditions, queued with the open-alert state."""
        events = self.tracker.process(conditions, now_us())
        if events:
            self._pending_events.extend(events)
            self._state_dirty = True

    def _missed(self, device_id: str, cycles: int = 1) -> None:
        """Cycles skipped (the previous poll still running) or late: counted; logged once until the
        device keeps its schedule again."""
        stats = self.device_stats.get(device_id)
        if stats is None:
            return
        stats.missed += cycles
        report = self._report(device_id)
        report.missed_since_poll += cycles
        dev = self.devices.get(device_id)
        if report.late_logged or dev is None:
            log.debug("device %s: poll cycle missed (previous poll still running)", device_id)
            return
        report.late_logged = True
        log.warning("device %s: a poll took longer than the %gs interval (timeout %gs); cycles skipped meanwhile "
                    "are counted (missed_cycles), not logged, until it keeps its schedule again",
                    device_id, dev.interval, dev.timeout)

    def _count_on_time(self, device_id: str) -> None:
        """After a poll: re-arm the missed-cycle warning once the device keeps its schedule again."""
        report = self._report(device_id)
        if report.missed_since_poll:
            report.missed_since_poll = report.on_time_polls = 0
            return
        report.on_time_polls += 1
        if report.late_logged and report.on_time_polls >= ON_TIME_POLLS_TO_REARM:
            report.late_logged = False
            log.info("device %s keeps its schedule again (%d cycles missed since start)", device_id,
                     self.device_stats[device_id].missed)

    def _report(self, device_id: str) -> DeviceReport:
        report = self._reports.get(device_id)
        if report is None:
            report = self._reports[device_id] = DeviceReport()
        return report

    def _status_event(self, device_id: str, health: DeviceHealth, ts: int) -> Event | None:
        """A device_status event when the status or its reason changed, or every LAST_SEEN_EVERY_US
        while the device answers (so central ``last_seen`` stays current without a write per poll)."""
        status = STATUS_OF_HEALTH[health.state]
        report = self._report(device_id)
        seen = health.last_good_us or 0
        reported = f"{status}/{health.reason}"
        if reported == report.status and (seen <= report.seen_us or ts - report.status_us < LAST_SEEN_EVERY_US):
            return None
        report.status, report.status_us, report.seen_us = reported, ts, seen
        return status_event({"device": device_id, "status": status, "reason": health.reason,
                                       "ts_us": ts, "last_seen_us": health.last_good_us})

    def _degraded_conditions(self, device_id: str, health: DeviceHealth) -> list[Condition]:
        """Active once a device stayed degraded (some points failing every poll) for DEGRADED_ALERT_POLLS
        polls, or at once when its alert is already open (restored at start); clear when it is not."""
        report = self._report(device_id)
        report.degraded_polls = report.degraded_polls + 1 if health.state == "degraded" else 0
        key = f"degraded/{device_id}"
        is_open = key in self.tracker.open
        if not report.degraded_polls and not is_open:
            return []  # the usual case: nothing to open or close
        active = bool(report.degraded_polls) and (report.degraded_polls >= DEGRADED_ALERT_POLLS or is_open)
        return [Condition(key=key, active=active, alert_type="device_degraded", severity="medium",
                          title=f"{device_id} degraded: some points unreadable",
                          message=f"{device_id}: {health.reason} ({report.degraded_polls} polls in a row)"
                          if active else "", device=device_id)]

    def _stopped_events(self) -> list[Event]:
        """Every device ``unknown`` ("agent stopped") with its last_seen: nobody watches it any more."""
        ts = now_us()
        return [status_event({"device": device_id, "status": "unknown", "reason": "agent stopped",
                                        "ts_us": ts, "last_seen_us": driver.health.last_good_us})
                for device_id, driver in self.drivers.items()]

    async def _commit_loop(self, stop: asyncio.Event) -> None:
        # commit_interval 0: polls commit themselves (see _poll); this loop only sweeps events
        interval = self.cfg.buffer.commit_interval or 0.1
        while not stop.is_set():
            await asyncio.sleep(interval)
            await self._commit()

    async def _metrics_loop(self, stop: asyncio.Event) -> None:
        """Every metrics_interval, the agent's own figures into ``system_metrics``."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), self.cfg.central.metrics_interval)
            except TimeoutError:
                self._pending_events.extend(self.metric_events())
                self._pending_events.append(self.gateway_beat())

    async def _detection_loop(self, stop: asyncio.Event) -> None:
        """Score a row of the latest values every detection interval (no clock point configured)."""
        assert self.detection is not None
        interval = self.detection.cfg.interval
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                events = self.detection.score(now_us())
                if events:
                    self._pending_events.extend(events)
                    self._state_dirty = True

    def metric_events(self) -> list[Event]:
        """One ``metric`` event per self-metric, all stamped now."""
        ts = now_us()
        st = self.stats
        buffer = self.delivery.buffer
        states = [d.health.state for d in self.drivers.values()]
        lag99 = max((float(s.snapshot()["lag_ms_p99"]) for s in self.device_stats.values()), default=0.0)
        figures = [
            ("readings_taken_total", st.readings_taken, "readings", "polling"),
            ("readings_thinned_total", st.readings_thinned, "readings", "polling"),
            ("devices_up", states.count("up"), "devices", "polling"),
            ("devices_degraded", states.count("degraded"), "devices", "polling"),
            ("devices_down", states.count("down"), "devices", "polling"),
            ("missed_cycles_total", sum(s.missed for s in self.device_stats.values()), "cycles", "polling"),
            ("schedule_lag_p99", lag99, "ms", "polling"),
            ("buffer_readings", buffer.reading_rows if buffer else 0, "readings", "buffer"),
            ("buffer_events", buffer.event_rows if buffer else 0, "events", "buffer"),
            ("readings_dropped_total", st.readings_dropped, "readings", "buffer"),
            ("rows_written_total", st.rows_written, "rows", "central"),
            ("write_errors_total", st.write_errors, "errors", "central"),
            ("records_quarantined_total", st.quarantined, "records", "central"),
        ]
        return [metric_event({"name": name, "value": float(value), "unit": unit, "category": category,
                                 "ts_us": ts}) for name, value, unit, category in figures]

    def gateway_beat(self, stopped: bool = False) -> Event:
        """This gateway's ``gateways`` row as of now (``stopped``: the last one, no device polled any more)."""
        buffer = self.delivery.buffer
        states = [] if stopped else [d.health.state for d in self.drivers.values()]
        return self.fleet.beat(states, buffer.reading_rows if buffer else 0, self.stats.clock_offset, stopped)

    def reload_refused(self, error: str) -> None:
        """A new device map was refused (the running one is kept): central hears it with the next heartbeat."""
        self.fleet.reloaded(self.fleet.map_hash, f"refused: {error}")
        self._pending_events.append(self.gateway_beat())

    def _state(self) -> dict[str, Any]:
        """What must survive a restart with the buffer: open alerts, the open detection and meter incidents."""
        state: dict[str, Any] = {"open_alerts": self.tracker.state(), "open_meter_attacks": self.meters.state()}
        if self.detection is not None:
            state["open_attacks"] = self.detection.incidents.state()
        return state

    def _meter_learning(self) -> dict[str, Any] | None:
        """The meters' learned state when due: a check finished learning, or :data:`SAVE_LEARNING_EVERY`
        passed (the load profile never stops learning: saving it with every poll would be wasted writes)."""
        now = time.monotonic()
        if not self.meters.finished_learning() and now - self._learning_saved < SAVE_LEARNING_EVERY:
            return None
        self._learning_saved = now
        return {"meter_learning": self.meters.learned()}

    async def _commit(self) -> None:
        """Group-commit everything polled since the last commit into the disk buffer."""
        if not self._pending_readings and not self._pending_events:
            return
        readings, self._pending_readings = self._pending_readings, []
        events, self._pending_events = self._pending_events, []
        state = self._state() if self._state_dirty else None
        self._state_dirty = False
        learning = self._meter_learning()
        saved = {**(state or {}), **(learning or {})} or None
        try:
            # a task of its own: if the commit loop is cancelled at shutdown, the put still completes
            # and _shutdown waits for it before the final commit and drain
            self._put_task = asyncio.ensure_future(self.delivery.put(readings, events, saved))
            result = await asyncio.shield(self._put_task)
        except sqlite3.Error as exc:
            # keep what was polled (in order, ahead of newer polls) and try again next commit
            self._pending_readings[:0] = readings
            self._pending_events[:0] = events
            self._state_dirty = state is not None or self._state_dirty
            self._learning_saved = -math.inf if learning else self._learning_saved
            if not self._commit_failing:
                log.error("cannot write the disk buffer (%s); holding %d readings in memory", exc,
                          len(self._pending_readings))
            self._commit_failing = True
            return
        if self._commit_failing:
            log.info("disk buffer writable again")
            self._commit_failing = False
        if not result.events_stored:  # disk full: readings were dropped (counted), events wait
            self._pending_events[:0] = events
            self._state_dirty = self._state_dirty or state is not None
            self._learning_saved = -math.inf if learning else self._learning_saved
        if result.dropped:
            self.stats.readings_dropped += result.dropped
        full = Condition(
            key="buffer/full", active=result.full, alert_type="buffer_overflow", severity="critical",
            title="edge buffer full: readings dropped",
            message=f"{result.dropped} readings dropped ({self.cfg.buffer.when_full}); "
                    f"{self.stats.readings_dropped} since start", value=float(result.dropped))
        self._track([full])

    async def _status_loop(self, stop: asyncio.Event) -> None:
        ping = watchdog_interval()
        while not stop.is_set():
            await self._update_percentiles()
            self._write_status()
            self._gateway_conditions()
            self._central_conditions()
            if ping:
                notify("WATCHDOG=1")
            await asyncio.sleep(min(STATUS_EVERY, ping or STATUS_EVERY))

    async def _update_percentiles(self) -> None:
        """Refresh every device's latency/lag percentiles, yielding to polls every few devices."""
        for index, stats in enumerate(list(self.device_stats.values())):
            stats.update_percentiles()
            if index % 20 == 19:
                await asyncio.sleep(0)

    def snapshot(self) -> Snapshot:
        """The live state shown by ``hacksky-edge status`` and the demo."""
        buffer = self.delivery.buffer
        st = self.stats
        devices: dict[str, DeviceSnapshot] = {}
        for device_id, dev_stats in self.device_stats.items():
            driver = self.drivers.get(device_id)
            health = driver.health if driver else None
            devices[device_id] = {"state": health.state if health else "unknown",
                                  "reason": health.reason if health else "",
                                  "errors": dict(health.errors) if health else {}, **dev_stats.snapshot()}
        return {
            "gateway": self.cfg.gateway.id, "pid": os.getpid(), "updated": time.time(),
            "polling": {"pids": self.shards.pids() if self.shards else [],
                        "restarts": self.shards.restarts if self.shards else 0},
            "started": st.started, "readings_taken": st.readings_taken, "readings_thinned": st.readings_thinned,
            "readings_per_s": round(st.readings_per_second(), 1),
            "open_alerts": len(self.tracker.open) + int(bool(self.detection and self.detection.incidents.open
                                                             and self.detection.incidents.open.alerted)),
            "buffer": {"readings": buffer.reading_rows if buffer else 0,
                       "events": buffer.event_rows if buffer else 0,
                       "dropped": st.readings_dropped, "path": str(self.cfg.buffer.path)},
            "central": {"url": self.central_url, "state": st.central_state, "error": st.central_error,
                        "rows_written": st.rows_written, "events_written": st.events_written,
                        "write_errors": st.write_errors, "quarantined": st.quarantined,
                        "last_flush": st.last_flush, "stalled": self.stalled(),
                        "stalled_for_s": round(self.delivery.stall_seconds(), 1),
                        "writer_pid": self.delivery.pid(), "writer_restarts": self.delivery.restarts,
                        "clock_offset_s": st.clock_offset, "conflicts_retried": st.conflicts_retried,
                        "node": self._central_node(), "failovers": st.failovers},
            "outputs": self._outputs_snapshot(),
            "devices": devices,
            "detection": self._detection_snapshot(),
        }

    def _central_node(self) -> str | None:
        """``host:port`` of the database node the writer uses (``central.failover`` given), else None."""
        index, nodes = self.stats.central_node, self._central_nodes
        return nodes[index] if index is not None and index < len(nodes) else None

    def _outputs_snapshot(self) -> dict[str, OutputSnapshot]:
        """Each output's figures and what it has not acknowledged yet."""
        buffer = self.delivery.buffer
        out: dict[str, OutputSnapshot] = {}
        for cfg in self.cfg.outputs:
            f = self.stats.outputs.get(cfg.name) or OutputStats()
            out[cfg.name] = {"url": cfg.url, "format": cfg.format, "state": f.state, "error": f.error,
                             "readings": f.readings, "events": f.events, "errors": f.errors,
                             "pending": buffer.pending.get(cfg.name, 0) if buffer else 0,
                             "last_flush": f.last_flush, "counters": dict(f.counters)}
        return out

    async def metrics_snapshot(self) -> Snapshot:
        """:meth:`snapshot` plus the buffer's size and oldest reading (read on the buffer thread)."""
        snap = self.snapshot()
        buffer = self.delivery.buffer
        names = list(snap["outputs"])

        def read() -> tuple[int, int | None, list[tuple[int | None, int]]]:
            assert buffer is not None
            return (buffer.used_bytes(), buffer.oldest_ts_us(),
                    [(buffer.oldest_ts_us(n), buffer.dropped_for(n)) for n in names])

        used, oldest, outputs = (await self.delivery.in_buffer(read) if buffer is not None
                                 else (0, None, [(None, 0)] * len(names)))
        now = now_us()
        snap["buffer"]["bytes"] = used
        snap["buffer"]["oldest_age_s"] = 0.0 if oldest is None else max(0.0, (now - oldest) / 1e6)
        for name, (first, dropped) in zip(names, outputs, strict=True):
            snap["outputs"][name]["oldest_age_s"] = 0.0 if first is None else max(0.0, (now - first) / 1e6)
            snap["outputs"][name]["dropped"] = dropped
        return snap

    def stalled(self) -> bool:
        """The central writer is stuck although the database answers (an outage is ``down``, not stalled)."""
        return (self.stats.central_state != "down"
                and self.delivery.stall_seconds() > self.cfg.central.stall_after)

    def _central_conditions(self) -> None:
        """Alerts for a writer that cannot deliver although central answers (stalled, or refused
        settings), and for a clock that differs from central's."""
        st = self.stats
        stalled, misconfigured = self.stalled(), st.central_state == "misconfigured"
        clock = clock_condition(st.clock_offset, self.cfg.central.max_clock_offset)
        if clock.active != self._clock_off:
            self._clock_off = clock.active
            if clock.active:
                log.warning("%s", clock.message)
            else:
                log.info("gateway clock within %g s of the central database's again (%+.3f s)",
                         self.cfg.central.max_clock_offset, st.clock_offset or 0.0)
        self._track([
            clock,
            Condition(key="central/stalled", active=stalled, alert_type="central_stalled", severity="critical",
                      title="central writer stalled: buffered records are not moving",
                      message=(f"no pack delivered for {self.delivery.stall_seconds():.0f} s "
                               f"(central {st.central_state}): {st.central_error or 'no error returned'}")
                      if stalled else ""),
            Condition(key="central/misconfigured", active=misconfigured, alert_type="central_config_error",
                      severity="critical", title="central database refused the gateway's settings",
                      message=f"{st.central_error}; check central.url, the password and the grants"
                      if misconfigured else ""),
        ])

    async def health(self) -> Health:
        """Readiness: the scheduler polls, the buffer takes writes, central is up or we are buffering."""
        scheduling = self.scheduler.running
        buffer_ok = self.delivery.buffer is not None and not self._commit_failing
        central = self.stats.central_state
        stalled = self.stalled()
        central_ok = central != "misconfigured" and not stalled
        if stalled:
            central_check = (f"stalled: nothing delivered for {self.delivery.stall_seconds():.0f} s "
                             f"({central}): {self.stats.central_error}")
        elif central == "misconfigured":
            central_check = f"configuration error: {self.stats.central_error}"
        else:
            central_check = "up" if central == "up" else f"{central}, buffering on disk"
        checks = {"scheduler": "running" if scheduling else "stopped",
                  "buffer": "writable" if buffer_ok else "failing", "central": central_check}
        states = [d.health.state for d in self.drivers.values()]
        return {"ready": scheduling and buffer_ok and central_ok, "gateway": self.cfg.gateway.id, "checks": checks,
                "devices": {"up": states.count("up"), "degraded": states.count("degraded"),
                            "down": states.count("down"), "total": len(states)}}

    def _detection_snapshot(self) -> DetectionSnapshot | None:
        d = self.detection
        if d is None:
            return None
        inc = d.incidents.open
        return {"rows_scored": d.rows_scored, "alarms": d.alarms, "opened": d.incidents.opened,
                "score": round(d.last.score, 2) if d.last else None,
                "open_detection": None if inc is None else {
                    "attack_type": inc.attack_type, "confidence": inc.confidence, "signals": inc.signals,
                    "since": inc.opened_us / 1e6}}

    def _write_status(self) -> None:
        try:
            write_state(self.cfg.buffer.path, self.snapshot())
        except OSError as exc:
            log.warning("cannot write state file: %s", exc)
