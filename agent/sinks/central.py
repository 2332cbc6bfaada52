"""The central database (MySQL/MariaDB or SQLite) as a sink, over :class:`~agent.writer.CentralWriter`."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.engine import Engine

from agent.buffer.disk import Pack
from agent.central import migrate
from agent.central.engine import failover_of
from agent.central.writer import CentralWriter, error_text, is_config_error, is_unavailable
from agent.records import DeviceInfo, Record
from agent.sinks import FailureKind


class CentralSink:
    """Writes packs into the central schema; migrates it first when ``auto_migrate``."""

    name = "central"

    def __init__(self, engine: Engine, gateway_id: str, auto_migrate: bool = True) -> None:
        self.engine = engine
        self.writer = CentralWriter(engine, gateway_id)
        self.auto_migrate = auto_migrate

    def prepare(self, devices: Sequence[DeviceInfo]) -> None:
        """Upgrade the schema (when ``auto_migrate``), then register or refresh the devices."""
        if self.auto_migrate:
            migrate.upgrade(self.engine)
        self.writer.sync_devices(devices)

    def write(self, pack: Pack) -> None:
        """One transaction; replaying a pack changes nothing."""
        self.writer.write(pack)

    def write_isolating(self, pack: Pack) -> list[tuple[Record, str]]:
        """Bisect the pack down to the records the database refuses (see :meth:`CentralWriter.write_isolating`)."""
        return self.writer.write_isolating(pack)

    def classify(self, exc: BaseException) -> FailureKind:
        """Refused settings, then any other SQLAlchemy error but a poison row, are the database's
        fault; everything else (a refused row, text the driver cannot encode) is the records'."""
        if is_config_error(exc):
            return "misconfigured"
        return "unavailable" if is_unavailable(exc) else "content"

    def error_text(self, exc: BaseException) -> str:
        """The driver's own message (else the exception's type and text), first line only."""
        return error_text(exc)

    def counters(self) -> dict[str, int]:
        """The gateway's clock offset against the database's in microseconds (once measured), the
        transactions tried again after a conflict, and with ``central.failover`` the node in use
        (its index: 0 the url's, 1.. the failover list's) and the moves between nodes."""
        counts = {"conflicts_retried": self.writer.conflicts_retried}
        offset = self.writer.clock_offset
        if offset is not None:
            counts["clock_offset_us"] = round(offset * 1e6)
        failover = failover_of(self.engine)
        if failover is not None and len(failover.nodes) > 1:
            counts |= {"node": failover.current, "failovers": failover.moves}
        return counts

    def reset(self) -> None:
        """Drop pooled connections: they may cache revoked privileges or a broken session state."""
        self.engine.dispose()

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
