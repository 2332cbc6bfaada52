"""Detector throughput on BATADAL rows: the agent's streaming path vs the bare matrix product.

Baseline: one ``matrix @ features`` per row, the arithmetic the cross-signal model cannot
avoid. Measured: ``StreamingDetector.step_many`` (all detectors, the rows in one batch: evaluation,
training, catching up), ``StreamingDetector.step`` (one row at a time) and the agent's
``DetectionRunner`` (readings in, one row scored per clock tick), all on one core, same rows, same run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from agent.detect.builtin import CTOWN, CTOWN_TRAINING
from agent.detect.dataset import load_csv
from agent.detect.evaluate import train_from_csv
from agent.detect.runner import DetectionRunner
from agent.detect.stream import StreamingDetector, feature_vector
from agent.settings import DetectionConfig, ModbusDevice
from drivers.base import Reading

TEST = CTOWN_TRAINING.with_name("BATADAL_dataset04_relabelled.csv")


def _rate(run: Callable[[], int], min_seconds: float) -> float:
    """Rows per second of ``run`` (which returns rows done), repeated for at least ``min_seconds``."""
    rows, started = 0, time.perf_counter()
    while time.perf_counter() - started < min_seconds:
        rows += run()
    return rows / (time.perf_counter() - started)


def run(min_seconds: float = 3.0) -> dict[str, Any]:
    """Measure and return the figures."""
    model = train_from_csv(CTOWN_TRAINING)
    data = load_csv(TEST)
    x = data.select(model.signals)
    hours = data.hours
    n, signals = len(x), len(model.signals)
    matrix = model.residuals.matrix

    def bare() -> int:
        for i in range(1, n):
            matrix @ feature_vector(x[i], x[i - 1], float(hours[i]))
        return n - 1

    def batch() -> int:
        StreamingDetector(model).step_many(x, hours)
        return n

    def detector() -> int:
        det = StreamingDetector(model)
        for i in range(n):
            det.step(x[i], float(hours[i]))
        return n

    device = ModbusDevice.model_validate({"id": "ctown", "host": "127.0.0.1", "points": [
        {"name": "hour", "address": 0, "type": "float32"},
        *({"name": s, "address": 2 + 2 * k, "type": "float32"} for k, s in enumerate(model.signals))]})
    polls = [[Reading("ctown", "hour", 0, float(hours[i]), None, "good")]
             + [Reading("ctown", s, 0, float(x[i, k]), None, "good") for k, s in enumerate(model.signals)]
             for i in range(n)]

    def agent_path() -> int:
        runner = DetectionRunner(DetectionConfig(model=CTOWN, clock="ctown/hour"), [device], model)
        for i, readings in enumerate(polls):
            tick = runner.observe("ctown", readings)
            if tick is not None:
                runner.score(i, tick)
        return n

    base = _rate(bare, min_seconds)
    rows = []
    for name, fn in [("bare matrix product (baseline)", bare),
                     ("StreamingDetector.step_many (all detectors, one batch)", batch),
                     ("StreamingDetector.step (all detectors, row by row)", detector),
                     ("agent DetectionRunner (readings in, rows scored)", agent_path)]:
        rate = base if fn is bare else _rate(fn, min_seconds)
        rows.append({"path": name, "rows/s": rate, "readings/s": rate * signals, "vs baseline": rate / base})
    return {"signals": signals, "rows": n, "residuals": int(matrix.shape[0]), "results": rows}


COLUMNS = ["path", "rows/s", "readings/s", "vs baseline"]
TITLE = "Detection throughput, one core (BATADAL dataset04 rows, 43 signals)"
