"""From an ``OpcUaDevice`` of the map to the protocol driver (secrets resolved here, not in drivers/)."""

from __future__ import annotations

import os

from agent.settings import OpcUaDevice
from drivers.opcua import OpcUaDriver
from drivers.opcua.spec import Endpoint, NodeSpec


def _password(device: OpcUaDevice) -> str | None:
    if device.password_file is not None:
        return device.password_file.read_text(encoding="utf-8").strip()
    if device.password_env is not None:
        return os.environ.get(device.password_env)
    return None


def opcua_driver(device: OpcUaDevice, interval: float, timeout: float, gateway: str) -> OpcUaDriver:
    """The driver for one OPC UA device; its application URI names this gateway unless its certificate has one."""
    sec = device.security
    endpoint = Endpoint(
        url=device.endpoint, mode=device.mode, interval=interval, timeout=timeout, timestamps=device.timestamps,
        max_nodes_per_read=device.max_nodes_per_read, policy=sec.policy, security_mode=sec.mode,
        certificate=sec.certificate, private_key=sec.private_key, trust_dir=sec.trust_dir,
        trust_on_first_use=sec.trust_on_first_use, identity=device.identity_type, username=device.username,
        password=_password(device), application_uri=f"urn:hacksky-edge:{gateway}")
    points = [NodeSpec(p.name, p.node, p.path, p.scale, p.offset, p.sampling_interval, p.queue_size,
                       (p.deadband.type, p.deadband.value) if p.deadband else None) for p in device.points]
    return OpcUaDriver(device.id, endpoint, points)
