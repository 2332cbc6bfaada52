"""Typed configuration models for the YAML device map, validated once at load."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    WithJsonSchema,
    model_validator,
)

from agent.units import ByteSize, Duration, DurationOrZero

RegisterTable = Literal["holding", "input", "coil", "discrete"]
PointType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64",
    "float32", "float64", "bool", "string",
]
ByteOrder = Literal["big", "little"]
Role = Literal["power", "voltage", "current", "frequency", "temperature", "humidity", "energy", "power_factor"]
DeviceType = Literal["power_meter", "plc", "sensor", "rtu", "meter", "other"]
Severity = Literal["low", "medium", "high", "critical"]

NAME_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"
#: a host name or IP address: no spaces, no slashes (an empty host is refused too)
HOST_PATTERN = r"^[^\s/]+$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]*$"
#: a meter profile's name: lowercase, digits and dashes
PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"
OPCUA_ENDPOINT_PATTERN = r"^opc\.tcp://"


def stored_in(column: str, length: int, **kwargs: Any) -> Any:
    """A string field stored centrally in ``column`` (``table.column``): at most ``length`` long.

    The column is named in the error message; a test pins every such field to the schema.
    """
    return Field(max_length=length, json_schema_extra={"column": column}, **kwargs)


#: Registers taken by each numeric type.
REGISTER_COUNT: dict[str, int] = {
    "int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}


class StrictModel(BaseModel):
    """Base model: unknown keys are an error, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Limits(StrictModel):
    """Alarm limits of one point; an alert is raised outside [min, max]."""

    min: float | None = None
    max: float | None = None
    severity: Severity = "high"


def _parse_band(value: object) -> object:
    """``0.5`` (absolute, in the point's unit) or ``"2%"`` (of the last stored value) -> a :class:`Band`."""
    if isinstance(value, bool):
        raise ValueError("expected a change such as 0.5 (in the point's unit) or 2% (of the last stored value)")
    if isinstance(value, (int, float)):
        return {"absolute": value}
    if isinstance(value, str):
        text = value.strip()
        try:
            return {"percent": float(text[:-1])} if text.endswith("%") else {"absolute": float(text)}
        except ValueError:
            raise ValueError(f"{value!r} is not a change such as 0.5 or 2%") from None
    return value


class Band(StrictModel):
    """Report by exception: a new value is stored once it differs from the last stored one by at least
    ``absolute`` (in the point's unit) and, when set, at least ``percent`` of the last stored value."""

    absolute: float | None = Field(default=None, ge=0)
    percent: float | None = Field(default=None, gt=0, le=100)


#: a deadband written as text: ``0.5`` or ``2%``
BAND_TEXT = {"type": "string", "pattern": r"^\s*\d+(\.\d+)?\s*%?\s*$"}
#: a point's deadband as the map writes it: ``0.5`` or ``2%``
ChangeBand = Annotated[Band, BeforeValidator(_parse_band), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0}, BAND_TEXT],
    "description": "store a value once it moved this much: 0.5 (in the point's unit) or 2% (of the last stored)"})]


class SignalConfig(StrictModel):
    """What every point has, whatever the protocol: its name, scaling and checks."""

    name: str = stored_in("readings.point", 64, pattern=NAME_PATTERN)
    scale: float = 1.0
    offset: float = 0.0
    unit: str | None = None
    role: Role | None = None
    limits: Limits | None = None
    stuck_after: int | None = Field(default=None, ge=2, description="cycles unchanged")
    max_rate: float | None = Field(default=None, gt=0, description="units per second")
    #: report by exception: store the value at least this often even when it has not moved past its
    #: deadband (checks and detection still see every sample); default with a deadband: 10 minutes
    heartbeat: Duration | None = None


class PointConfig(SignalConfig):
    """One value read from a Modbus device."""

    table: RegisterTable = "holding"
    address: int = Field(ge=0, le=65535)
    #: report by exception: store a new value once it moved this much (see ``heartbeat``)
    deadband: ChangeBand | None = None
    type: PointType = "uint16"
    length: int | None = Field(default=None, ge=1, le=125, description="registers, for strings")
    bit: int | None = Field(default=None, ge=0, le=15)
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    #: SunSpec-style scale factor: the value is multiplied by 10 to the power of that point's value
    scale_factor: str | None = Field(default=None, pattern=NAME_PATTERN,
                                     description="another point of the device (an int16 exponent)")

    @property
    def register_count(self) -> int:
        """Registers (or bits, for coil/discrete tables) this point occupies."""
        if self.table in ("coil", "discrete") or self.type == "bool":
            return 1
        if self.type == "string":
            return self.length or 1
        return REGISTER_COUNT[self.type]


class DeviceDefaults(StrictModel):
    """Values every device inherits unless it sets its own.

    An inherited ``timeout`` is capped at the device's interval (a 100ms device need not set
    both); a ``timeout`` written above its interval, here or on a device, is refused.
    """

    interval: Duration = 1.0
    timeout: Duration = 1.0
    byte_order: ByteOrder = "big"
    word_order: ByteOrder = "big"
    max_gap: int = Field(default=8, ge=0, le=124)


class DeviceBase(StrictModel):
    """What every device has, whatever the protocol."""

    id: str = stored_in("devices.device_id_str", 64, pattern=NAME_PATTERN)
    name: str | None = stored_in("devices.name", 128, default=None)
    type: DeviceType = "other"
    location: str | None = stored_in("devices.location", 128, default=None)
    enabled: bool = True
    interval: Duration | None = None
    timeout: Duration | None = None
    #: report by exception for every point of the device that sets none of its own
    deadband: ChangeBand | None = None
    heartbeat: Duration | None = None
    #: a power meter's upstream meter, whose power includes this one's: the feeder check compares the
    #: feeder's power with the sum of its sub-meters' (docs/detection-power.md)
    feeder: str | None = Field(default=None, pattern=NAME_PATTERN, description="id of the meter feeding this one")

    def own_defaults(self) -> dict[str, Any]:
        """The entries of ``defaults`` besides interval and timeout this device sets itself (its protocol's)."""
        return {}


Transport = Literal["tcp", "rtu_over_tcp", "serial"]
Parity = Literal["none", "even", "odd"]
#: the central address's prefix of each transport (Modbus TCP has none: ``host:port/unit``)
TRANSPORT_PREFIX: dict[str, str] = {"tcp": "", "rtu_over_tcp": "rtu://", "serial": "serial:"}


class ModbusDevice(DeviceBase):
    """A Modbus device and the points read from it: Modbus TCP, RTU over TCP (a serial-to-Ethernet
    converter) or RTU on a serial line. Devices on one link (host:port, or serial port) form one bus."""

    protocol: Literal["modbus"] = "modbus"
    transport: Transport = "tcp"
    #: the device's address ``[rtu://]host:port/unit`` is stored in devices.address (255): 16 kept for the rest
    host: str | None = stored_in("devices.address", 239, default=None, min_length=1, pattern=HOST_PATTERN)
    #: the TCP port (tcp, rtu_over_tcp; default 502), or the serial device (serial: ``/dev/ttyUSB0``)
    port: int | str | None = None
    unit_id: int = Field(default=1, ge=0, le=255)
    #: serial line settings (serial transport; every device on one port must agree)
    baudrate: int = Field(default=19200, ge=300, le=1_000_000)
    parity: Parity = "even"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    #: a shipped meter profile (``hacksky-edge profiles``): its points and register layout, which the
    #: device's own ``points`` may override by name or add to
    profile: str | None = Field(default=None, pattern=PROFILE_NAME_PATTERN)
    #: the pause between a reply and the next request on the link; default: 3.5 characters on a
    #: serial line (at least 1.75 ms, as the Modbus serial line specification asks), none on TCP
    turnaround: DurationOrZero | None = Field(default=None, le=10.0)
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    max_gap: int | None = Field(default=None, ge=0, le=124)
    points: list[PointConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _port_number(cls, data: Any) -> Any:
        """A TCP port written as text (``port: ${MODBUS_PORT}``) is a number; a serial port stays a path."""
        if isinstance(data, dict) and data.get("transport", "tcp") != "serial":
            port = data.get("port")
            if isinstance(port, str) and port.strip().isdigit():
                return {**data, "port": int(port)}
        return data

    @property
    def tcp_port(self) -> int:
        """The TCP port (502 unless set; a serial device has none: 0)."""
        if self.transport == "serial":
            return 0
        return self.port if isinstance(self.port, int) else 502

    @property
    def target(self) -> str:
        """The host (TCP transports) or the serial device's path."""
        return str(self.port) if self.transport == "serial" else str(self.host)

    @property
    def link(self) -> str:
        """The bus the device is on: ``host:port`` (with the transport's prefix) or ``serial:/dev/...``."""
        where = self.target if self.transport == "serial" else f"{self.host}:{self.tcp_port}"
        return TRANSPORT_PREFIX[self.transport] + where

    @property
    def address(self) -> str:
        """Where the device is, as registered centrally."""
        return f"{self.link}/{self.unit_id}"

    @property
    def line_turnaround(self) -> float:
        """The pause between a reply and the next request: ``turnaround``, or its transport's default."""
        if self.turnaround is not None:
            return self.turnaround
        if self.transport != "serial":
            return 0.0
        bits_per_char = 1 + self.bytesize + (self.parity != "none") + self.stopbits
        return max(0.00175, 3.5 * bits_per_char / self.baudrate)

    def own_defaults(self) -> dict[str, Any]:
        """The register layout this device sets instead of inheriting it."""
        own = {"byte_order": self.byte_order, "word_order": self.word_order, "max_gap": self.max_gap}
        return {name: value for name, value in own.items() if value is not None}


class Deadband(StrictModel):
    """OPC UA data-change filter: ignore changes smaller than ``value`` (absolute or % of range)."""

    type: Literal["absolute", "percent"] = "absolute"
    value: float = Field(ge=0)


def _parse_filter(value: object) -> object:
    """An OPC UA point's ``deadband`` written short: ``0.5`` (absolute) or ``2%`` (of the server's EURange)."""
    band = _parse_band(value)
    if isinstance(band, dict) and set(band) in ({"absolute"}, {"percent"}):
        ((kind, amount),) = band.items()
        return {"type": kind, "value": amount}
    return band


#: an OPC UA point's deadband: ``0.5``, ``2%`` or ``{type: absolute|percent, value: ...}``
DeadbandFilter = Annotated[Deadband, BeforeValidator(_parse_filter), WithJsonSchema({
    "anyOf": [{"type": "number", "minimum": 0}, BAND_TEXT,
              {"type": "object", "properties": {"type": {"enum": ["absolute", "percent"]},
                                                "value": {"type": "number", "minimum": 0}},
               "required": ["value"], "additionalProperties": False}],
    "description": "the server's data-change filter (subscribe mode), also applied at the edge when absolute: "
                   "0.5 (in the point's unit) or 2% (of the server's EURange)"})]


class OpcUaPoint(SignalConfig):
    """One variable of an OPC UA server, by NodeId or by browse path from Objects."""

    node: str | None = Field(default=None, description="ns=2;s=Plant.Tank1.Level, i=..., g=..., b=..., nsu=URI;s=...")
    path: str | None = Field(default=None, description="/Objects/2:Plant/2:Tank1/2:Level")
    sampling_interval: Duration | None = Field(default=None, description="subscribe mode; default: the interval")
    queue_size: int = Field(default=10, ge=1, le=10000)
    deadband: DeadbandFilter | None = None


class OpcUaSecurity(StrictModel):
    """Secure channel: policy and mode; client certificate and key; which servers are trusted."""

    policy: Literal["None", "Basic256Sha256"] = "None"
    mode: Literal["None", "Sign", "SignAndEncrypt"] = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    trust_dir: Path | None = Field(default=None, description="server certificates (DER/PEM) trusted")
    trust_on_first_use: bool = False


class OpcUaDevice(DeviceBase):
    """An OPC UA server (a PLC) and the variables read from it."""

    protocol: Literal["opcua"]
    endpoint: str = stored_in("devices.address", 255, pattern=OPCUA_ENDPOINT_PATTERN)
    mode: Literal["poll", "subscribe"] = "poll"
    security: OpcUaSecurity = OpcUaSecurity()
    #: session identity; default: username when a username is given, else anonymous
    identity: Literal["anonymous", "username", "certificate"] | None = None
    username: str | None = None
    password_file: Path | None = Field(default=None, description="the password, never inline")
    password_env: str | None = Field(default=None, pattern=ENV_NAME_PATTERN,
                                     description="or: the environment variable holding it")
    #: a password sent over a channel that does not encrypt (mode None or Sign) is readable on the wire
    allow_plaintext_password: bool = False
    timestamps: Literal["source", "server", "gateway"] = "source"
    max_nodes_per_read: int | None = Field(default=None, ge=1, description="default: the server's own limit")
    points: list[OpcUaPoint] = Field(min_length=1)

    @property
    def address(self) -> str:
        """Where the device is, as registered centrally."""
        return self.endpoint

    @property
    def identity_type(self) -> str:
        """The identity the session uses."""
        return self.identity or ("username" if self.username else "anonymous")


def _protocol_of(value: object) -> str:
    if isinstance(value, dict):
        return str(value.get("protocol", "modbus"))
    return str(getattr(value, "protocol", "modbus"))


AnyDevice = ModbusDevice | OpcUaDevice

#: a device entry of the map: Modbus unless it says ``protocol: opcua``
DeviceConfig = Annotated[Annotated[ModbusDevice, Tag("modbus")] | Annotated[OpcUaDevice, Tag("opcua")],
                         Discriminator(_protocol_of)]


class TlsConfig(StrictModel):
    """TLS to MySQL/MariaDB: the CA that signed the server's certificate, optional client cert."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None
    verify_hostname: bool = True


DAY = 86400.0


class RetentionConfig(StrictModel):
    """How long ``hacksky-edge central maintain`` keeps each kind of row (``null``: for ever)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    raw: Duration | None = 30 * DAY  # readings
    minutes: Duration | None = Field(default=365 * DAY, alias="1m")  # readings_1m
    hours: Duration | None = Field(default=10 * 365 * DAY, alias="1h")  # readings_1h and power_1h
    power_readings: Duration | None = 365 * DAY
    system_metrics: Duration | None = 90 * DAY
    #: alerts once resolved and attack detections once ended (open ones stay whatever their age)
    incidents: Duration | None = 2 * 365 * DAY


class CentralConfig(StrictModel):
    """Where and how readings are written centrally."""

    url: str = Field(default="sqlite:///hacksky.db", repr=False)  # may hold a password (from the environment)
    password_file: Path | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval: Duration = 2.0
    auto_migrate: bool = True
    connect_timeout: Duration = 5.0
    metrics_interval: Duration = 60.0
    #: the gateway's clock may differ from the central database's by this much; past it an alert
    #: opens and readings are stored ``uncertain:clock`` until the clocks agree again
    max_clock_offset: Duration = 2.0
    #: what ``hacksky-edge central maintain`` keeps (the agent itself never deletes central rows)
    retention: RetentionConfig = RetentionConfig()
    #: the writer is `stalled` (health 503, alert) when the oldest pack has not moved this long
    #: while the database answers (an outage is `down`: buffering, as designed)
    stall_after: Duration = 120.0
    tls: TlsConfig | None = None
    #: further nodes of the same database (a MariaDB Galera cluster), ``host`` or ``host:port``:
    #: when the node in use fails or leaves the cluster's primary component, the writer moves to
    #: the next one that is ready (same user, password, database and TLS settings)
    failover: list[Annotated[str, Field(pattern=r"^[^\s/:@]+(:\d{1,5})?$")]] = Field(default_factory=list,
                                                                                   max_length=16)
    #: packs written at once, each on its own connection and acknowledged in order (MySQL and
    #: MariaDB; an SQLite file takes one writer at a time, so it gets one)
    connections: int = Field(default=3, ge=1, le=16)
    #: ``process``: the writer runs in a process of its own, on its own core; ``thread``: inside
    #: the agent's process (one interpreter less, ~70 MB); ``auto``: a process once the map offers
    #: enough points per second to gain from it (docs/performance.md)
    writer: Literal["auto", "process", "thread"] = "auto"

    def parallel_writes(self) -> int:
        """Packs the writer sends at once: ``connections``, or 1 for SQLite."""
        return 1 if self.url.startswith("sqlite") else self.connections


MQTT_URL_PATTERN = r"^mqtts?://[^/:@\s]+(:\d{1,5})?/?$"


class MqttTls(StrictModel):
    """TLS to the broker (``mqtts://``): the CA that signed its certificate, optional client certificate."""

    ca: Path | None = Field(default=None, description="default: the system's trusted CAs")
    cert: Path | None = None
    key: Path | None = None
    verify_hostname: bool = True


class MqttOutput(StrictModel):
    """An MQTT broker the readings are also published to (Sparkplug B or JSON), from the same buffer."""

    type: Literal["mqtt"]
    #: the output's name in logs, ``status`` and ``/metrics``, and its cursor in the buffer
    name: str = Field(default="mqtt", pattern=NAME_PATTERN)
    url: str = Field(pattern=MQTT_URL_PATTERN, description="mqtt://host:1883 or mqtts://host:8883")
    username: str | None = None
    password_file: Path | None = Field(default=None, description="the password, never inline")
    #: send the password over mqtt:// (no TLS) all the same: anyone on the network can read it
    allow_plaintext_password: bool = False
    client_id: str | None = Field(default=None, max_length=64,
                                  description="default: hacksky-edge-<gateway id>[-<name>]")
    qos: Literal[0, 1] = 1
    format: Literal["sparkplug_b", "json"] = "sparkplug_b"
    #: Sparkplug B group id (the edge node id is the gateway id, device ids the devices')
    group_id: str = Field(default="hacksky", pattern=r"^[^/#+\s]{1,64}$")
    #: JSON format: messages go to ``<topic_prefix>/<gateway>/<device>``
    topic_prefix: str = Field(default="hacksky", pattern=r"^[^#+\s]{1,128}$")
    tls: MqttTls | None = None
    keepalive: Duration = 30.0
    connect_timeout: Duration = 5.0
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval: Duration = 1.0

    def client_id_for(self, gateway: str) -> str:
        """``client_id``, or ``hacksky-edge-<gateway>`` plus the output's name unless it is the default
        ``mqtt`` (two outputs on one broker must not share one: each would take the other's session)."""
        if self.client_id:
            return self.client_id
        return f"hacksky-edge-{gateway}" if self.name == "mqtt" else f"hacksky-edge-{gateway}-{self.name}"

    @property
    def host_port(self) -> tuple[str, int]:
        """The broker's host and port (1883, or 8883 for mqtts://, when the URL names none)."""
        scheme, _, rest = self.url.partition("://")
        host, _, port = rest.rstrip("/").partition(":")
        return host, int(port) if port else (8883 if scheme == "mqtts" else 1883)


class BufferConfig(StrictModel):
    """The durable on-disk buffer between polling and the central writer."""

    path: Path = Path("hacksky-buffer")
    max_size: ByteSize = 2 * 2**30
    when_full: Literal["drop_oldest", "drop_newest"] = "drop_oldest"
    #: Group commit period; 0 makes every poll durable before the next one starts.
    commit_interval: DurationOrZero = Field(default=0.1, le=10.0)


class DetectionConfig(StrictModel):
    """Attack and anomaly detection across the plant's signals (see ``hacksky-edge train``)."""

    model: str = Field(description="model file from `hacksky-edge train`, or builtin:water-plant / builtin:ctown")
    #: model signal -> "device/point"; a signal not listed reads the one point of the same name
    signals: dict[str, str] = Field(default_factory=dict)
    interval: Duration = Field(default=1.0, description="a row is scored this often (the model's sampling period)")
    #: "device/point": score a row whenever this point changes; its value is the hour of day of the row
    clock: str | None = None
    target_system: str = stored_in("attack_detections.target_system", 128, default="process")
    #: confidence (0-100) from which a detection also raises an alert
    alert_from: float = Field(default=50.0, ge=0, le=100)


class MonitoringConfig(StrictModel):
    """The gateway's own HTTP endpoints: ``/health`` and Prometheus ``/metrics``."""

    enabled: bool = True
    listen: str = Field(default="127.0.0.1", description="bind address; 0.0.0.0 exposes it to the network")
    port: int = Field(default=9108, ge=0, le=65535, description="0 picks a free port (tests)")


class ProfileDevice(StrictModel):
    """What a device using a profile inherits unless it sets its own."""

    type: DeviceType = "power_meter"
    byte_order: ByteOrder | None = None
    word_order: ByteOrder | None = None
    max_gap: int | None = Field(default=None, ge=0, le=124)


class MeterProfile(StrictModel):
    """A register map several devices share (``profile: NAME``): one of the map's own ``profiles:``,
    or a shipped one (``hacksky-edge profiles``), which also names its source document."""

    manufacturer: str | None = None
    model: str | None = None
    document: str | None = Field(default=None, description="the manufacturer's document, its version and table")
    url: str | None = None
    notes: str | None = None
    device: ProfileDevice = ProfileDevice()
    points: list[PointConfig] = Field(min_length=1)


class GatewayConfig(StrictModel):
    """Identity of this gateway."""

    id: str = stored_in("devices.gateway_id", 64, pattern=NAME_PATTERN)
    name: str | None = None


class AgentConfig(StrictModel):
    """The whole device map."""

    gateway: GatewayConfig
    central: CentralConfig = CentralConfig()
    buffer: BufferConfig = BufferConfig()
    defaults: DeviceDefaults = DeviceDefaults()
    devices: list[DeviceConfig] = Field(default_factory=list)
    detection: DetectionConfig | None = None
    monitoring: MonitoringConfig = MonitoringConfig()
    #: where readings go besides ``central``, each from the same buffer with its own cursor
    outputs: list[MqttOutput] = Field(default_factory=list)
    #: files whose ``devices`` and ``profiles`` are spliced into this map (paths relative to it)
    include: list[str] = Field(default_factory=list)
    #: the map's own meter profiles, by name (a shipped profile of the same name is hidden)
    profiles: dict[Annotated[str, Field(pattern=PROFILE_NAME_PATTERN)], MeterProfile] = Field(default_factory=dict)
    #: polling processes: ``auto`` (one per core once the map offers enough points per second,
    #: else the agent polls itself), or a number (1: no polling process)
    workers: Annotated[int, Field(ge=1, le=64)] | Literal["auto"] = "auto"
    #: sha256 of the device map's text as read (set by the loader; see :meth:`map_hash`)
    _source_sha256: str = PrivateAttr(default="")

    def map_hash(self) -> str:
        """sha256 of the device map file as loaded (``sha256sum`` of the file gives the same; with
        ``include:``, of the file followed by each included one), or of the settings themselves,
        central and outputs left out (they hold secrets), for a map built in code."""
        if self._source_sha256:
            return self._source_sha256
        return hashlib.sha256(self.model_dump_json(exclude={"central", "outputs"}).encode()).hexdigest()

    def resolved(self, device: AnyDevice) -> ResolvedDevice:
        """The device with every inherited setting filled in from ``defaults``."""
        d = self.defaults
        own = d.model_copy(update=device.own_defaults())
        interval = device.interval or d.interval
        return ResolvedDevice(
            config=device,
            interval=interval,
            timeout=device.timeout or min(d.timeout, interval),
            byte_order=own.byte_order,
            word_order=own.word_order,
            max_gap=own.max_gap,
        )

    def enabled_devices(self) -> list[ResolvedDevice]:
        """Resolved devices that are enabled, in map order."""
        return [self.resolved(d) for d in self.devices if d.enabled]


class ResolvedDevice(BaseModel):
    """A device plus the effective values of its inheritable settings."""

    model_config = ConfigDict(frozen=True)

    config: AnyDevice
    interval: float
    timeout: float
    byte_order: ByteOrder
    word_order: ByteOrder
    max_gap: int

    @property
    def id(self) -> str:
        """The YAML id of the device."""
        return self.config.id

    @property
    def points_per_second(self) -> float:
        """Points this device offers per second at its interval."""
        return len(self.config.points) / self.interval
