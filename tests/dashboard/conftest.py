"""Every test of this directory drives a real browser (the ``browser`` marker); each module gets a
seeded database and the API over it, its clock pinned to the seeded day."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine

from agent.api.app import create_app
from tests.infra.api_server import TOKEN, Api, serve
from tests.infra.dashboard_data import NOW, Seeded, seed


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, Seeded]]:
    engine = create_engine(f"sqlite:///{tmp_path_factory.mktemp('dash') / 'central.db'}")
    yield engine, seed(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def api(seeded: tuple[Engine, Seeded]) -> Iterator[Api]:
    with serve(create_app(seeded[0], TOKEN, clock=lambda: NOW)) as api:
        yield api


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here is in the ``browser`` suite (``-m "not browser"`` leaves it out)."""
    here = Path(__file__).parent
    for item in items:
        if here in Path(item.fspath).parents:
            item.add_marker(pytest.mark.browser)
