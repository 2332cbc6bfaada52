"""A private Mosquitto per test: its port is the test's own, and the test may kill it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra.private_mosquitto import PrivateMosquitto


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateMosquitto]:
    """A running private broker (anonymous clients allowed)."""
    server = PrivateMosquitto(tmp_path / "mosquitto")
    server.start()
    try:
        yield server
    finally:
        server.stop()
