"""OPC UA driver: one session per device, batched Reads split by the server's limits, or a subscription.

Read-only by construction: the only services sent are the session's own, Read, Browse /
TranslateBrowsePaths and the subscription services. After any failure the session is dropped
and rebuilt on the next cycle (with backoff): nodes re-resolved, subscription re-created.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from datetime import UTC
from typing import Any

from asyncua import Client, ua
from asyncua.common.subscription import Subscription

from drivers.base import Backoff, DeviceHealth, ReadError, Reading, now_us
from drivers.opcua.security import configure_security, refusal_hint
from drivers.opcua.spec import Endpoint, NodeSpec
from drivers.opcua.text import log_safe, value_text

log = logging.getLogger(__name__)

#: used when the server does not publish OperationLimits/MaxNodesPerRead
DEFAULT_MAX_NODES_PER_READ = 100
UNKNOWN_NODE = {ua.StatusCodes.BadNodeIdUnknown, ua.StatusCodes.BadNodeIdInvalid, ua.StatusCodes.BadAttributeIdInvalid}
MAX_NODES_PER_READ_NODE = ua.NodeId(ua.Int32(11705))  # Server/ServerCapabilities/OperationLimits/MaxNodesPerRead
MAX_QUALITY = 63  # characters of readings.quality (migration 0002: 63 keeps MariaDB's one-byte length)


def quality_of(status: ua.StatusCode | None) -> str:
    """``good``, ``uncertain:<Name>`` or ``bad:<Name>`` from an OPC UA StatusCode, at most 63 characters.

    The name is that of the code without its info bits (limits, overflow); a code asyncua does not
    name, or whose name would not fit the ``quality`` column, is written in hex (``bad:0x811E0000``).
    Good codes with a name (GoodClamped ...) are all ``good``. :func:`status_of` reverses it.
    """
    if status is None or status.is_good():
        return "good"
    code = status.value & 0xFFFF0000
    name = ua.StatusCode(ua.UInt32(code)).name
    severity = "uncertain" if status.is_uncertain() else "bad"
    quality = f"{severity}:{name}"
    if getattr(ua.StatusCodes, name, None) != code or len(quality) > MAX_QUALITY:
        quality = f"{severity}:0x{code:08X}"
    return quality


def status_of(quality: str) -> ua.StatusCode | None:
    """The StatusCode a :func:`quality_of` string stands for; None for the driver's own reasons (``bad:timeout``)."""
    if quality == "good":
        return ua.StatusCode(ua.UInt32(ua.StatusCodes.Good))
    name = quality.partition(":")[2]
    try:
        code = int(name, 16) if name.startswith("0x") else getattr(ua.StatusCodes, name, None)
    except ValueError:
        return None
    return ua.StatusCode(ua.UInt32(code)) if isinstance(code, int) else None


class _Changes:
    """Subscription handler: data changes queue up until the next scheduled read drains them."""

    def __init__(self, driver: OpcUaDriver) -> None:
        self._driver = driver

    async def datachange_notification(self, node: Any, val: Any, data: Any) -> None:
        self._driver._on_change(node.nodeid, data.monitored_item.Value)

    async def status_change_notification(self, status: Any) -> None:
        self._driver._lost = f"subscription status {log_safe(status)}"


class OpcUaDriver:
    """Reads one OPC UA server's configured variables; failures become bad-quality readings."""

    def __init__(self, device_id: str, endpoint: Endpoint, points: list[NodeSpec]) -> None:
        self.device_id = device_id
        self.endpoint = endpoint
        self.points = points
        self.health = DeviceHealth(device_id)
        self._client: Client | None = None
        self._resolved: dict[str, ua.NodeId] = {}   # point name -> NodeId (this session)
        self._by_nodeid: dict[ua.NodeId, list[NodeSpec]] = {}
        self._unresolved: dict[str, str] = {}       # point name -> why (reported once per session)
        self._max_per_read = DEFAULT_MAX_NODES_PER_READ
        self._subscription: Subscription | None = None
        self._queue: list[Reading] = []
        self._lost: str | None = None
        self._backoff = Backoff()
        self._last_error = ""
        self.read_requests = 0                      # Read service calls sent (tests, metrics)

    # -- session -------------------------------------------------------------------------
    async def _session(self) -> Client:
        if self._client is not None and self._lost is None:
            return self._client
        if self._lost is not None:
            log.warning("device %s: %s; reconnecting", self.device_id, self._lost)
            await self._drop()
        wait = self._backoff.wait()
        if wait > 0:
            raise ReadError("connection", f"{self.endpoint.url} unreachable, next try in {wait:.1f}s")
        ep = self.endpoint
        client = Client(ep.url, timeout=ep.timeout)
        client.name = client.description = "HackSky Edge"
        try:
            await configure_security(client, ep)
            await asyncio.wait_for(client.connect(), ep.timeout * 4)
        except Exception as exc:  # connection, security and session errors all mean: not connected now
            await _quietly_disconnect(client)
            self._backoff.failed()
            # the text may carry a server's words (a certificate subject): escaped, so it stays one line
            detail = log_safe(exc, 1024) if str(exc) else type(exc).__name__
            why = f"cannot open a session on {ep.url}: {detail}{refusal_hint(exc, ep, client.application_uri)}"
            if why != self._last_error:  # the reason, once (DeviceHealth logs the state change)
                log.error("device %s: %s", self.device_id, why)
                self._last_error = why
            raise ReadError("connection", why) from exc
        self._client, self._lost = client, None
        self._backoff.succeeded()
        self._last_error = ""
        await self._resolve(client)
        await self._read_limits(client)
        if ep.mode == "subscribe":
            await self._subscribe(client)
        log.info("device %s: session on %s (%d nodes, %d per Read, mode %s)", self.device_id, ep.url,
                 len(self._resolved), self._max_per_read, ep.mode)
        return client

    async def _drop(self) -> None:
        client, self._client, self._subscription = self._client, None, None
        self._resolved, self._by_nodeid, self._lost = {}, {}, None
        if client is not None:
            await _quietly_disconnect(client)

    async def _resolve(self, client: Client) -> None:
        """NodeIds (``nsu=`` forms via the namespace array) and browse paths, once per session."""
        self._unresolved = {}
        paths = [p for p in self.points if p.path]
        for p in self.points:
            if p.node:
                try:
                    self._resolved[p.name] = await _parse_nodeid(client, p.node)
                except (ValueError, ua.UaError) as exc:
                    self._unresolved[p.name] = f"node {p.node!r}: {exc}"
        if paths:
            relative = [p.path.removeprefix("/Objects/") for p in paths if p.path]
            results = await client.translate_browsepaths(ua.NodeId(ua.Int32(ua.ObjectIds.ObjectsFolder)),
                                                         ["/" + r for r in relative])
            for p, res in zip(paths, results, strict=True):
                if res.StatusCode.is_good() and res.Targets:
                    target = res.Targets[0].TargetId
                    self._resolved[p.name] = ua.NodeId(target.Identifier, target.NamespaceIndex)
                else:
                    self._unresolved[p.name] = f"path {p.path!r}: {quality_of(res.StatusCode)}"
        self._by_nodeid = {}
        for p in self.points:
            if p.name in self._resolved:
                self._by_nodeid.setdefault(self._resolved[p.name], []).append(p)
        for name, why in self._unresolved.items():
            self._skip(name, why)

    def _skip(self, name: str, why: str) -> None:
        """A node the server does not know: reported once per session, then left out of reads."""
        log.error("device %s: point %s skipped: %s", self.device_id, name, log_safe(why))
        self._unresolved[name] = why
        self._resolved.pop(name, None)
        self.health.errors[why.rsplit(":", 1)[-1].strip()] += 1

    async def _read_limits(self, client: Client) -> None:
        if self.endpoint.max_nodes_per_read:
            self._max_per_read = self.endpoint.max_nodes_per_read
            return
        try:
            (dv,) = await client.uaclient.read_attributes([MAX_NODES_PER_READ_NODE], ua.AttributeIds.Value)
            good = dv.Value is not None and (dv.StatusCode is None or dv.StatusCode.is_good())
            limit = dv.Value.Value if good and dv.Value is not None else 0
        except ua.UaError:
            limit = 0
        self._max_per_read = int(limit) if limit else DEFAULT_MAX_NODES_PER_READ

    # -- reading -------------------------------------------------------------------------
    async def read(self) -> list[Reading]:
        """Poll mode: Read every resolved node; subscribe mode: the changes since the last call."""
        try:
            client = await self._session()
            readings = await (self._poll(client) if self.endpoint.mode == "poll" else self._drain(client))
        except ReadError as exc:
            return self._all_bad(exc.reason)
        except (TimeoutError, ConnectionError, OSError, ua.UaError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            log.debug("device %s: %s (%s)", self.device_id, reason, exc)
            await self._drop()
            self._backoff.failed()
            return self._all_bad(reason)
        bad = Counter(r.quality.split(":", 1)[-1] for r in readings if not r.good)
        if readings or self.endpoint.mode == "poll":
            self.health.record(max(len(readings), 1), bad)
        return readings

    async def _poll(self, client: Client) -> list[Reading]:
        nodeids = list(self._by_nodeid)  # each node once, however many points name it
        values: list[ua.DataValue] = []
        for start in range(0, len(nodeids), self._max_per_read):
            chunk = nodeids[start:start + self._max_per_read]
            self.read_requests += 1
            values += await asyncio.wait_for(client.uaclient.read_attributes(chunk, ua.AttributeIds.Value),
                                             self.endpoint.timeout)
        gateway_ts = now_us()
        readings = []
        for nid, dv in zip(nodeids, values, strict=True):
            if dv.StatusCode is not None and dv.StatusCode.value in UNKNOWN_NODE:
                for spec in self._by_nodeid.pop(nid):
                    self._skip(spec.name, f"node {nid.to_string()}: {quality_of(dv.StatusCode)}")
                continue
            readings += [self._reading(spec, dv, gateway_ts) for spec in self._by_nodeid[nid]]
        return readings

    async def _subscribe(self, client: Client) -> None:
        """One subscription; monitored items created in one call per (sampling, queue, deadband) group."""
        ep = self.endpoint
        sub = await client.create_subscription(ep.interval * 1000, _Changes(self))
        groups: dict[tuple[float, int, tuple[str, float] | None], list[Any]] = {}
        for nid, specs in self._by_nodeid.items():
            spec = specs[0]
            key = ((spec.sampling_interval or ep.interval) * 1000, spec.queue_size, spec.deadband)
            groups.setdefault(key, []).append(client.get_node(nid))
        for (sampling, queue, deadband), nodes in groups.items():
            flt = None
            if deadband is not None:
                flt = ua.DataChangeFilter(Trigger=ua.DataChangeTrigger.StatusValue,
                                          DeadbandType=2 if deadband[0] == "percent" else 1,
                                          DeadbandValue=deadband[1])
            # the public helpers take no filter and sampling interval together; _subscribe takes both
            await sub._subscribe(nodes, ua.AttributeIds.Value, flt, queue,  # type: ignore[call-overload]
                                 sampling_interval=ua.Double(sampling))
        self._subscription = sub

    def _on_change(self, nodeid: ua.NodeId, dv: ua.DataValue) -> None:
        ts = now_us()
        for spec in self._by_nodeid.get(nodeid, []):
            self._queue.append(self._reading(spec, dv, ts))

    async def _drain(self, client: Client) -> list[Reading]:
        # a dead server does not say so in subscribe mode: probe it with one small Read
        await asyncio.wait_for(client.nodes.server_state.read_value(), self.endpoint.timeout)
        readings, self._queue = self._queue, []
        return readings

    def _reading(self, spec: NodeSpec, dv: ua.DataValue, gateway_ts: int) -> Reading:
        ts = gateway_ts
        stamp = {"source": dv.SourceTimestamp, "server": dv.ServerTimestamp}.get(self.endpoint.timestamps)
        if stamp is not None:  # asyncua gives naive UTC or aware datetimes
            ts = int((stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).timestamp() * 1_000_000)
        quality = quality_of(dv.StatusCode)
        raw = dv.Value.Value if dv.Value is not None else None
        if quality.startswith("bad") or raw is None:
            return Reading(self.device_id, spec.name, ts, None, None, quality if quality != "good" else "bad:no_value")
        if isinstance(raw, bool | int | float):
            value = float(raw) * spec.scale + spec.offset
            if not math.isfinite(value):
                return Reading(self.device_id, spec.name, ts, None, None, "bad:not_finite")
            return Reading(self.device_id, spec.name, ts, value, None, quality)
        text, repaired = value_text(raw)  # valid UTF-8, no NUL, <= 255 characters
        return Reading(self.device_id, spec.name, ts, None, text, repaired or quality)

    def _all_bad(self, reason: str) -> list[Reading]:
        ts = now_us()
        readings = [Reading(self.device_id, p.name, ts, None, None, f"bad:{reason}") for p in self.points]
        self.health.record(len(readings), Counter({reason: len(readings)}))
        return readings

    async def close(self) -> None:
        """End the session."""
        await self._drop()


async def _quietly_disconnect(client: Client) -> None:
    try:
        await asyncio.wait_for(client.disconnect(), 2.0)
    except Exception:  # the server may already be gone; nothing to do about it
        log.debug("disconnect failed", exc_info=True)


async def _parse_nodeid(client: Client, text: str) -> ua.NodeId:
    """``ns=2;s=X``, ``i=``, ``g=``, ``b=`` forms, and ``nsu=<uri>;s=X`` resolved via the namespace array."""
    if text.startswith("nsu="):
        uri, _, rest = text[4:].partition(";")
        index = await client.get_namespace_index(uri)
        return ua.NodeId.from_string(f"ns={index};{rest}")
    return ua.NodeId.from_string(text)

