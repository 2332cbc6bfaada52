"""Rows of signals from CSV files in the BATADAL layout (``DATETIME``, signals…, ``ATT_FLAG``)."""

from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import numpy as np

from agent.units import parse_time

#: Label of a row that is not labelled (BATADAL's dataset04 marks those -999): not scored.
UNLABELLED = -999


class DatasetError(ValueError):
    """A CSV that cannot be read as rows of signals; the message names file and line."""


@dataclass
class Dataset:
    """Signals as columns, rows in time order; ``labels`` only when the file has ``ATT_FLAG``."""

    path: str
    times: list[datetime]
    signals: list[str]
    values: np.ndarray
    labels: np.ndarray | None

    @property
    def hours(self) -> np.ndarray:
        """Hour of day (fractional) of every row."""
        return np.array([t.hour + t.minute / 60 for t in self.times])

    def column(self, name: str) -> np.ndarray:
        """One signal's values."""
        return self.values[:, self.signals.index(name)]

    def select(self, signals: list[str]) -> np.ndarray:
        """The columns of ``signals`` in that order (a model's order)."""
        missing = [s for s in signals if s not in self.signals]
        if missing:
            raise DatasetError(f"{self.path}: no column for signal(s) {', '.join(missing)}")
        return self.values[:, [self.signals.index(s) for s in signals]]


def open_csv(path: str | Path) -> IO[str]:
    """A CSV file as text, decompressed if its name ends in ``.gz`` (how the package ships C-Town's)."""
    if str(path).endswith(".gz"):
        return gzip.open(path, "rt", newline="")
    return open(path, newline="")


def load_csv(path: str | Path, time_column: str = "DATETIME", label_column: str = "ATT_FLAG") -> Dataset:
    """Read a CSV, or a gzip-compressed one; header names are stripped (BATADAL's dataset04 has leading spaces)."""
    with open_csv(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
        except StopIteration:
            raise DatasetError(f"{path}: empty file") from None
        if time_column not in header:
            raise DatasetError(f"{path}:1: no {time_column} column (columns: {', '.join(header[:5])}...)")
        t_at = header.index(time_column)
        l_at = header.index(label_column) if label_column in header else None
        value_at = [i for i in range(len(header)) if i not in (t_at, l_at)]
        times: list[datetime] = []
        rows: list[list[float]] = []
        labels: list[int] = []
        for line, row in enumerate(reader, start=2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise DatasetError(f"{path}:{line}: {len(row)} fields, header has {len(header)}")
            try:
                times.append(parse_time(row[t_at].strip()))
                rows.append([float(row[i]) for i in value_at])
                if l_at is not None:
                    labels.append(int(float(row[l_at])))
            except ValueError as exc:
                raise DatasetError(f"{path}:{line}: {exc}") from None
    if not rows:
        raise DatasetError(f"{path}: no data rows")
    return Dataset(str(path), times, [header[i] for i in value_at], np.array(rows, dtype=float),
                   np.array(labels, dtype=int) if l_at is not None else None)
