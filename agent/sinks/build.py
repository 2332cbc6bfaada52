"""The sink a map's ``central`` settings name: the central database, or ``null://`` (discard).

``url: null://`` runs the whole agent (polling, checks, buffer, writer) with nothing behind the
writer: what ``bench`` uses to measure the agent without a database in the loop.
"""

from __future__ import annotations

from agent.central.engine import make_engine
from agent.settings import CentralConfig
from agent.sinks import Sink
from agent.sinks.central import CentralSink
from agent.sinks.null import NullSink

NULL_URL = "null://"


def sink_name(central: CentralConfig) -> str:
    """The name of the sink (and of its buffer cursor) ``central`` configures."""
    return NullSink.name if central.url == NULL_URL else CentralSink.name


def build_sink(central: CentralConfig, gateway: str) -> Sink:
    """The sink ``central`` configures, ready to prepare."""
    if central.url == NULL_URL:
        return NullSink()
    return CentralSink(make_engine(central), gateway, central.auto_migrate)
