"""Outputs of the pipeline: where delivered packs go (central is one), behind one small protocol.

:class:`~agent.delivery.Delivery` owns batching, retries, acknowledgement and quarantine; a sink
only writes a pack and says what kind of failure an exception of its own is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol

from agent.buffer.disk import Pack
from agent.records import DeviceInfo, Record

#: What a sink's failure means to the delivery loop: ``unavailable`` (wait and retry the same
#: pack), ``misconfigured`` (an operator must act; retried meanwhile) or ``content`` (the records'
#: fault: isolate and quarantine them, deliver the rest).
FailureKind = Literal["unavailable", "misconfigured", "content"]


class Sink(Protocol):
    """An output for buffered packs. Every method but :meth:`classify` and :meth:`error_text`
    blocks and runs on the sink's own thread, one call at a time."""

    #: short name for logs and status, e.g. ``central``
    name: str

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        """Get ready to write (schema migrations, device registration); called again after a device change."""

    def write(self, pack: Pack) -> None:
        """Write the whole pack in one transaction; writing the same pack again changes nothing."""

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        """Write every record the sink accepts; return the refused ones with their error.

        Raises (like :meth:`write`) when the sink itself, not a record, fails.
        """

    def classify(self, exc: BaseException) -> FailureKind:
        """What an exception raised by this sink means (see :data:`FailureKind`)."""

    def error_text(self, exc: BaseException) -> str:
        """A one-line description of an exception raised by this sink, for logs and status."""

    def counters(self) -> dict[str, int]:
        """The sink's own counts for status and metrics (e.g. commands refused), cheap to read."""

    def reset(self) -> None:
        """Drop pooled connections after a failure, so the next attempt starts afresh."""

    def close(self) -> None:
        """Release the sink's connections at shutdown."""
