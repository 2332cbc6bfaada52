"""What the agent and its writer process say to each other: one JSON object per line.

Agent -> writer: ``devices`` (register these), ``wake`` (a full batch waits), ``drain`` (deliver
what is left within ``seconds``, answer ``drained`` and exit). The writer exits as well when
its input closes (the agent is gone).

Writer -> agent: ``ready``, then the :class:`~agent.pipeline.delivery.Outcome` calls as they
happen (``written``, ``idle``, ``state``, ``content_error``, ``quarantined``, ``counters``; an output's carry
its name as ``sink``) and ``drained``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from agent.records import DeviceInfo, Event, Record
from agent.settings import BufferConfig, CentralConfig, MqttOutput
from drivers.base import Reading

#: A quarantine message carries at most this many records (the buffer keeps them all).
MAX_RECORDS_SENT = 1000


class WriterSpec(BaseModel):
    """Everything the writer process needs, sent as its first input line (the URL may hold a
    password: a pipe, never the command line or the environment)."""

    gateway: str
    central: CentralConfig
    buffer: BufferConfig
    devices: list[DeviceInfo]
    outputs: list[MqttOutput] = []
    log_level: str = "INFO"
    log_format: str = "text"


def encode(kind: str, **fields: Any) -> bytes:
    """One message as a line."""
    return json.dumps({"t": kind, **fields}, separators=(",", ":")).encode() + b"\n"


def records_to_wire(refused: list[tuple[Record, str]]) -> list[list[Any]]:
    """Quarantined records as JSON-able lists (readings as their fields, events as kind and payload)."""
    return [["reading", list(rec), error] if isinstance(rec, Reading) else ["event", [rec.kind, rec.payload], error]
            for rec, error in refused[:MAX_RECORDS_SENT]]


def records_from_wire(items: list[list[Any]]) -> list[tuple[Record, str]]:
    """The inverse of :func:`records_to_wire`."""
    return [(Reading(*fields) if kind == "reading" else Event(*fields), error) for kind, fields, error in items]
