"""Replays a BATADAL-format CSV as a PLC: one row per ``row_seconds``, float32 holding registers.

Register map (holding, float32 big-endian, two registers each): 0 row number, 2 hour of day
of the row, 4 ATT_FLAG, then signal ``k`` of the file at ``6 + 2k`` in column order.
"""

from __future__ import annotations

import csv
from pathlib import Path

from simulators.store import RegisterImage

ROW, HOUR, LABEL, FIRST_SIGNAL = 0, 2, 4, 6


def read_rows(path: str | Path) -> tuple[list[str], list[tuple[float, float, list[float]]]]:
    """Signal names and (hour, label, values) per row; headers stripped, the time column first."""
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = [h.strip() for h in next(reader)]
        label_at = header.index("ATT_FLAG") if "ATT_FLAG" in header else None
        value_at = [i for i in range(1, len(header)) if i != label_at]
        rows = []
        for row in reader:
            if not row:
                continue
            hour = float(row[0].strip().split(" ")[-1].split(":")[0])
            label = float(row[label_at]) if label_at is not None else 0.0
            rows.append((hour, label, [float(row[i]) for i in value_at]))
    return [header[i] for i in value_at], rows


def register_points(signals: list[str]) -> list[dict[str, object]]:
    """The points of a replayed file, as entries of a device map's ``points`` list."""
    points: list[dict[str, object]] = [
        {"name": "row", "table": "holding", "address": ROW, "type": "float32"},
        {"name": "hour", "table": "holding", "address": HOUR, "type": "float32"},
        {"name": "ATT_FLAG", "table": "holding", "address": LABEL, "type": "float32"},
    ]
    points += [{"name": s, "table": "holding", "address": FIRST_SIGNAL + 2 * k, "type": "float32"}
               for k, s in enumerate(signals)]
    return points


class BatadalReplay:
    """A unit model serving rows ``start..stop`` of the file in real time, then holding the last."""

    def __init__(self, path: str | Path, row_seconds: float = 1.0, start: int = 0, stop: int | None = None) -> None:
        self.signals, rows = read_rows(path)
        self.rows = rows[start:stop]
        self.start = start
        self.row_seconds = row_seconds
        self.image = RegisterImage()
        self._t0: float | None = None
        self._served = -1
        self._publish(0)

    @property
    def finished_at(self) -> float:
        """Seconds from the first request until the last row is served."""
        return len(self.rows) * self.row_seconds

    def refresh(self, now: float) -> None:
        """Publish the row due at ``now`` (clock starts at the first request)."""
        if self._t0 is None:
            self._t0 = now
        index = min(int((now - self._t0) / self.row_seconds), len(self.rows) - 1)
        if index != self._served:
            self._publish(index)

    def _publish(self, index: int) -> None:
        self._served = index
        hour, label, values = self.rows[index]
        self.image.put("holding", ROW, float(self.start + index), "float32")
        self.image.put("holding", HOUR, hour, "float32")
        self.image.put("holding", LABEL, label, "float32")
        for k, v in enumerate(values):
            self.image.put("holding", FIRST_SIGNAL + 2 * k, v, "float32")
