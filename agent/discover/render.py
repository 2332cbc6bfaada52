"""Discovery results as device-map YAML: a header of comments, a device entry, its points with comments.

The text is valid YAML on its own (``devices:`` with one device) and pastes into a map's
``devices:`` list. Point names follow the map's rules (``^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$``)
and are unique regardless of case (MySQL compares them without it).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import yaml

from agent.discover.guess import Proposal, word_order_of
from agent.discover.modbus import ModbusScan, TableScan
from agent.discover.opcua import FoundVariable, Inventory
from drivers.modbus.connection import Link
from drivers.opcua.spec import Endpoint
from drivers.opcua.text import log_safe, value_text

NAME_LENGTH = 64
_NOT_IN_NAME = re.compile(r"[^A-Za-z0-9_.:-]")
_TRANSPORTS = {"tcp": "Modbus TCP", "rtu_over_tcp": "RTU over TCP"}


def point_name(text: str) -> str:
    """A valid point name from any text: other characters become ``_``; too long, its end is kept."""
    name = _NOT_IN_NAME.sub("_", text)[-NAME_LENGTH:] or "_"
    return name if re.match(r"[A-Za-z0-9_]", name[0]) else "_" + name[1:]


def unique_names(names: Sequence[str]) -> list[str]:
    """``names`` made unique (ignoring case) by ``_2``, ``_3`` ... suffixes, within the length limit."""
    taken: set[str] = set()
    out = []
    for name in names:
        candidate, k = name, 2
        while candidate.lower() in taken:
            suffix = f"_{k}"
            candidate, k = name[:NAME_LENGTH - len(suffix)] + suffix, k + 1
        taken.add(candidate.lower())
        out.append(candidate)
    return out


def _flow(entry: dict[str, Any]) -> str:
    """One point as a YAML flow mapping on one line."""
    return yaml.safe_dump(entry, default_flow_style=True, sort_keys=False, allow_unicode=True, width=2**16).strip()


def document(header: Sequence[str], device: dict[str, Any], points: Sequence[tuple[dict[str, Any], str]]) -> str:
    """``# header`` lines, then ``devices:`` with ``device`` and its points, each with a ``# comment``."""
    lines = [f"# {log_safe(line, 1000)}" for line in header]
    body = yaml.safe_dump(device, default_flow_style=False, sort_keys=False, allow_unicode=True, width=2**16)
    lines.append("devices:")
    lines += [("  - " if i == 0 else "    ") + line for i, line in enumerate(body.splitlines())]
    if not points:
        lines.append("    points: []  # nothing found: the map needs at least one point")
    else:
        lines.append("    points:")
        lines += [f"      - {_flow(entry)}" + (f"  # {log_safe(comment, 200)}" if comment else "")
                  for entry, comment in points]
    return "\n".join(lines) + "\n"


def _number(value: float | int | None) -> str:
    if value is None:
        return "?"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def shown_value(value: Any) -> str:
    """A current value in a few characters for a comment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _number(value)
    if value is None:
        return "no value"
    if isinstance(value, list):
        return f"{len(value)} values"
    return repr(log_safe(value_text(value)[0], 40))


# -- OPC UA ----------------------------------------------------------------------------------------

def opcua_points(variables: Sequence[FoundVariable]) -> list[tuple[dict[str, Any], str]]:
    """``{name, node, unit}`` of each variable, and a comment: data type, access, current value."""
    names = unique_names([point_name(v.dotted) for v in variables])
    points = []
    for name, v in zip(names, variables, strict=True):
        entry: dict[str, Any] = {"name": name, "node": v.node}
        if v.unit:
            entry["unit"] = v.unit
        now = shown_value(v.value) if v.quality == "good" else f"{v.quality} {shown_value(v.value)}"
        points.append((entry, f"{v.data_type}{'[]' if v.array else ''}, {v.access}, {now}"))
    return points


def opcua_header(inv: Inventory) -> list[str]:
    """What was browsed, the namespaces the node ids name, and the server certificate if unchecked."""
    s = inv.scope
    lines = [f"hacksky-edge discover opcua {inv.endpoint}",
             f"browsed {s.root} {s.depth} level(s) down (Browse and Read only): {inv.browsed} node(s), "
             f"{inv.seen_variables} variable(s), {len(inv.variables)} matching {s.match!r}"]
    lines += [f"namespace {i}: {uri} (node ids name the URI: they survive index changes)"
              for i, uri in inv.namespaces.items()]
    if inv.truncated:
        lines.append(f"stopped after {s.max_nodes} nodes (--max-nodes): browse less (--root, --depth) or raise it")
    if inv.unverified_certificate:
        lines.append(f"server certificate SHA-256 {inv.unverified_certificate} was NOT verified: put it in "
                     "security.trust_dir (or use trust_on_first_use) before the agent connects")
    return lines


# -- Modbus ----------------------------------------------------------------------------------------

def modbus_points(proposals: Sequence[Proposal]) -> list[tuple[dict[str, Any], str]]:
    """``{name, table, address, type[, word_order]}`` of each proposal, and the values that suggested it."""
    points = []
    for p in proposals:
        entry: dict[str, Any] = {"name": f"{p.table}_{p.address}", "table": p.table, "address": p.address,
                                 "type": p.type}
        if p.word_order is not None:
            entry["word_order"] = p.word_order
        points.append((entry, _evidence(p)))
    return points


def _evidence(p: Proposal) -> str:
    if p.type == "bool":
        return "on" if p.value else "off"
    if p.counter:
        step = p.again - p.value if p.again is not None else 0
        return f"counter: {p.value} then {p.again} (+{_number(step)})"
    text = _number(p.value) + (f" (0x{p.value:04X})" if p.type == "uint16" and isinstance(p.value, int) else "")
    if p.again is not None and p.again != p.value:
        text += f", then {_number(p.again)}"
    return text


def _runs(scan: TableScan, limit: int = 12) -> str:
    runs = [f"{a}" if a == b else f"{a}-{b}" for a, b in scan.runs()]
    return ", ".join(runs[:limit]) + (f", ... ({len(runs)} runs)" if len(runs) > limit else "")


def where(link: Link) -> str:
    """The link in words: ``127.0.0.1:502 (Modbus TCP)``, ``/dev/ttyUSB0 (RTU, 19200 baud, parity even)``."""
    if link.transport == "serial":
        return f"{link.host} (RTU, {link.baudrate} baud, parity {link.parity})"
    return f"{link.host}:{link.port} ({_TRANSPORTS[link.transport]})"


def modbus_header(scan: ModbusScan, proposals: Sequence[Proposal]) -> list[str]:
    """What was probed, with how many requests, and which addresses of each table answered."""
    plan = scan.plan
    lines = [f"hacksky-edge discover modbus: unit {plan.unit} at {where(plan.link)}, "
             f"addresses {plan.first}-{plan.last}",
             f"read-only: {scan.requests} read requests (function codes 1-4); answering registers read twice, "
             f"{plan.wait:g} s apart, to tell counters"]
    for table in scan.tables:
        order = word_order_of([p for p in proposals if p.table == table.table])
        if table.first:
            text = f"{table.table}: answers at {_runs(table)}"
            text += f"; float32 word order {order}" if order else ""
        else:
            errors = ", ".join(f"{reason} x{n}" for reason, n in table.errors.most_common())
            text = f"{table.table}: no address answers ({errors or 'nothing asked'})"
        lines.append(text + (f"; {table.stopped}" if table.stopped else ""))
    lines.append("types are guesses from the values read, high byte first: check them against the register map")
    return lines


def modbus_device(link: Link, unit: int, device_id: str) -> dict[str, Any]:
    """The skeleton of the device entry (its points follow)."""
    device: dict[str, Any] = {"id": device_id, "protocol": "modbus"}
    if link.transport == "serial":
        device.update(transport="serial", port=link.host, baudrate=link.baudrate, parity=link.parity)
    else:
        if link.transport != "tcp":
            device["transport"] = link.transport
        device.update(host=link.host, port=link.port)
    device.update(unit_id=unit, byte_order="big")
    return device


def opcua_device(endpoint: Endpoint, device_id: str, password_env: str | None = None,
                 allow_plaintext_password: bool = False) -> dict[str, Any]:
    """The skeleton of the device entry: endpoint, mode, and the security and login the browse used."""
    device: dict[str, Any] = {"id": device_id, "protocol": "opcua", "endpoint": endpoint.url, "mode": "poll"}
    if endpoint.policy != "None":
        security: dict[str, Any] = {"policy": endpoint.policy, "mode": endpoint.security_mode}
        for key, path in (("certificate", endpoint.certificate), ("private_key", endpoint.private_key),
                          ("trust_dir", endpoint.trust_dir)):
            if path is not None:
                security[key] = str(path.resolve())
        device["security"] = security
    if endpoint.username is not None:
        device.update(username=endpoint.username, password_env=password_env)
        if allow_plaintext_password:
            device["allow_plaintext_password"] = True
    return device
