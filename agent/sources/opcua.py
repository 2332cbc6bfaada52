"""OPC UA servers: security, login and node checks, and the driver (secrets resolved here, not in drivers/)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from agent.settings import OpcUaDevice, ResolvedDevice
from agent.sources.base import ConfigPath, MapIssue, PasswordSource, SourceContext
from drivers.base import Driver


def map_issues(device: OpcUaDevice, base: ConfigPath) -> list[MapIssue]:
    """Each point names one node; security policy, mode and certificate agree; endpoint and login are usable."""
    issues: list[MapIssue] = []
    for index, point in enumerate(device.points):
        here = (*base, "points", index)
        if (point.node is None) == (point.path is None):
            issues.append((here, "give exactly one of node (a NodeId) or path (a browse path from /Objects)"))
        if point.path is not None and not point.path.startswith("/Objects/"):
            issues.append(((*here, "path"), "a browse path starts at /Objects/, e.g. /Objects/2:Plant/2:Tank1/2:Level"))
    sec = device.security
    if (sec.policy == "None") != (sec.mode == "None"):
        issues.append(((*base, "security", "mode"), f"policy {sec.policy} needs mode "
                       + ("None" if sec.policy == "None" else "Sign or SignAndEncrypt")))
    needs_cert = sec.policy != "None" or device.identity_type == "certificate"
    if needs_cert and (sec.certificate is None or sec.private_key is None):
        issues.append(((*base, "security", "certificate"),
                       "a client certificate and private_key are needed (hacksky-edge opcua-cert makes them)"))
    issues.extend(_endpoint_issues(device.endpoint, (*base, "endpoint")))
    issues.extend(_login_issues(device, base))
    return issues


def _endpoint_issues(endpoint: str, here: ConfigPath) -> list[MapIssue]:
    """An ``opc.tcp://`` URL must name a host (and a valid port when it gives one)."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018 -- parsing the port is the check
    except ValueError as exc:  # a bad port, an unclosed [IPv6 literal
        return [(here, f"{endpoint!r} is not a valid URL: {exc} (opc.tcp://host:4840/path)")]
    if not parts.hostname:
        return [(here, f"{endpoint!r} names no host (opc.tcp://host:4840/path)")]
    return []


def _login_issues(device: OpcUaDevice, base: ConfigPath) -> list[MapIssue]:
    """A username login needs one password source and a channel that encrypts it."""
    if device.password_file is not None and device.password_env is not None:
        return [((*base, "password_env"), "give one of password_file or password_env, not both")]
    if device.identity_type != "username":
        return []
    if device.username is None or (device.password_file is None and device.password_env is None):
        return [((*base, "password_file" if device.username else "username"),
                 "a username identity needs username and password_file (or password_env)")]
    mode = device.security.mode
    if mode != "SignAndEncrypt" and not device.allow_plaintext_password:
        return [((*base, "username"),
                 f"a username login over security mode {mode} sends the password readable on the wire: "
                 "use security mode SignAndEncrypt (or set allow_plaintext_password: true)")]
    return []


def passwords(device: OpcUaDevice) -> list[PasswordSource]:
    """The password of a username login (file or environment variable), if the session uses one."""
    if device.identity_type != "username":
        return []
    field = "password_file" if device.password_file is not None else "password_env"
    return [(field, device.password_file, device.password_env)]


def _password(device: OpcUaDevice) -> str | None:
    if device.password_file is not None:
        return device.password_file.read_text(encoding="utf-8").strip()
    if device.password_env is not None:
        return os.environ.get(device.password_env)
    return None


def driver(device: OpcUaDevice, resolved: ResolvedDevice, context: SourceContext) -> Driver:
    """The driver for one OPC UA device; its application URI names this gateway unless its certificate has one."""
    # here, not at the top: loading a map (check, status) need not import asyncua (~0.35 s)
    from drivers.opcua import OpcUaDriver
    from drivers.opcua.spec import Endpoint, NodeSpec

    sec = device.security
    endpoint = Endpoint(
        url=device.endpoint, mode=device.mode, interval=resolved.interval, timeout=resolved.timeout,
        timestamps=device.timestamps, max_nodes_per_read=device.max_nodes_per_read, policy=sec.policy,
        security_mode=sec.mode, certificate=sec.certificate, private_key=sec.private_key, trust_dir=sec.trust_dir,
        trust_on_first_use=sec.trust_on_first_use, identity=device.identity_type, username=device.username,
        password=_password(device), application_uri=f"urn:hacksky-edge:{context.gateway}")
    points = [NodeSpec(p.name, p.node, p.path, p.scale, p.offset, p.sampling_interval, p.queue_size,
                       (p.deadband.type, p.deadband.value) if p.deadband else None) for p in device.points]
    return OpcUaDriver(device.id, endpoint, points)
