"""The agent's side of detection: latest value of every wired point -> a row -> verdict -> events."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from agent.detect.builtin import builtin_model, builtin_signals
from agent.detect.incidents import IncidentTracker
from agent.detect.model import DetectorModel
from agent.detect.stream import StreamingDetector, Verdict
from agent.detect.wiring import wire
from agent.records import Event
from agent.settings import AnyDevice, DetectionConfig
from drivers.base import Reading

log = logging.getLogger(__name__)


def load_model(cfg: DetectionConfig) -> DetectorModel:
    """The configured model: a built-in one is trained now, a file is read."""
    if builtin_signals(cfg.model) is not None:
        return builtin_model(cfg.model, cfg.interval)
    return DetectorModel.load(cfg.model)


class DetectionRunner:
    """Keeps the latest value of each model signal and scores a row per interval or clock tick."""

    def __init__(self, cfg: DetectionConfig, devices: Sequence[AnyDevice], model: DetectorModel,
                 state: dict[str, Any] | None = None) -> None:
        self.cfg = cfg
        self.model = model
        wired, self.clock, problems = wire(cfg, devices, model.signals)
        if problems:  # configload reports these with line numbers; this guards direct construction
            raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        self._column = {ref: model.signals.index(sig) for sig, ref in wired.items()}
        self._devices = {device for device, _ in wired.values()} | ({self.clock[0]} if self.clock else set())
        self.row = np.full(len(model.signals), np.nan)
        self._clock_value: float | None = None
        self.detector = StreamingDetector(model)
        self.incidents = IncidentTracker("process", cfg.target_system, model.tuning.clear_after, cfg.alert_from,
                                         state)
        self.rows_scored = 0
        self.alarms = 0
        self.last: Verdict | None = None

    def observe(self, device: str, readings: Sequence[Reading]) -> float | None:
        """Take a poll's good values; with a clock point, the hour of day when a new row is due."""
        if device not in self._devices:
            return None
        tick = None
        for r in readings:
            if r.value is None or not r.good:
                continue
            key = (device, r.point)
            column = self._column.get(key)
            if column is not None:
                self.row[column] = r.value
            if key == self.clock and r.value != self._clock_value:
                tick = r.value if self._clock_value is not None else None
                self._clock_value = r.value
        return tick

    def score(self, ts_us: int, hour: float | None = None) -> list[Event]:
        """Score the current row (hour of day from the clock point, else local time)."""
        if np.isnan(self.row).all():
            return []  # nothing read yet
        if hour is None:
            t = time.localtime(ts_us / 1e6)
            hour = t.tm_hour + t.tm_min / 60
        verdict = self.detector.step(self.row.copy(), hour % 24)
        self.rows_scored += 1
        self.alarms += verdict.alarm
        self.last = verdict
        return self.incidents.process(verdict, ts_us)
