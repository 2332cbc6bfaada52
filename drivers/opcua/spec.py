"""What the OPC UA driver needs to know, as plain data (the agent builds it from its config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class NodeSpec:
    """One variable: by NodeId string or browse path, with scaling and subscription settings."""

    name: str
    node: str | None = None
    path: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    sampling_interval: float | None = None
    queue_size: int = 10
    deadband: tuple[str, float] | None = None  # ("absolute" | "percent", value)


@dataclass(frozen=True)
class Endpoint:
    """One server: URL, mode, security and identity (secrets already resolved by the agent)."""

    url: str
    mode: str = "poll"                   # poll | subscribe
    interval: float = 1.0
    timeout: float = 1.0
    timestamps: str = "source"           # source | server | gateway
    max_nodes_per_read: int | None = None
    policy: str = "None"                 # None | Basic256Sha256
    security_mode: str = "None"          # None | Sign | SignAndEncrypt
    certificate: Path | None = None
    private_key: Path | None = None
    trust_dir: Path | None = None
    trust_on_first_use: bool = False     # pin the first server certificate of this URL, refuse others
    identity: str = "anonymous"          # anonymous | username | certificate
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    #: presented when no certificate is supplied, or the certificate names none (else the certificate's URI)
    application_uri: str = "urn:hacksky-edge:client"
