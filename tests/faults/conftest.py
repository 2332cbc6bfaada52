"""Fixtures of the fault suite: private MariaDB servers and the reliability report."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

from tests.infra.private_mariadb import PrivateMariaDB

REPORT: list[FaultRow] = []


@dataclass
class FaultRow:
    """One line of docs/reliability.md: a fault, how it was injected and what was counted."""

    fault: str
    injected: str
    sent: int
    stored: int
    lost: int
    duplicated: int
    recovery_s: float | None = None
    note: str = ""


@pytest.fixture
def fault_report() -> Iterator[list[FaultRow]]:
    """Rows appended here are printed at the end of the run (and saved to $HACKSKY_FAULT_REPORT)."""
    rows: list[FaultRow] = []
    yield rows
    REPORT.extend(rows)


@pytest.fixture
def private_mariadb(tmp_path: Path) -> Iterator[PrivateMariaDB]:
    """A running private MariaDB with an empty ``hacksky`` database."""
    server = PrivateMariaDB(tmp_path / "mariadb")
    server.start()
    server.execute("CREATE DATABASE hacksky CHARACTER SET utf8mb4")
    try:
        yield server
    finally:
        server.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test of this directory is in the ``faults`` suite (``-m "not faults"`` leaves it out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the reliability table gathered by the fault tests."""
    if not REPORT:
        return
    tr = terminalreporter
    tr.section("reliability (fault suite)")
    tr.write_line("| fault | injected | sent | stored | lost | duplicated | recovery s | note |")
    tr.write_line("|---|---|---|---|---|---|---|---|")
    for r in REPORT:
        recovery = "" if r.recovery_s is None else f"{r.recovery_s:.1f}"
        tr.write_line(f"| {r.fault} | {r.injected} | {r.sent} | {r.stored} | {r.lost} | {r.duplicated} "
                      f"| {recovery} | {r.note} |")
    target = os.environ.get("HACKSKY_FAULT_REPORT")
    if target:
        Path(target).write_text(json.dumps([asdict(r) for r in REPORT], indent=2))
