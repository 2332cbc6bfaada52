"""The water plant as an OPC UA server (asyncua): Plant/Tank1/Level ..., same physics and scenarios.

String NodeIds ``ns=<idx>;s=Plant.Tank1.Level`` in namespace ``urn:hacksky:water-plant``. Like the
Modbus simulator it records every service request it receives (by type), can enforce a
MaxNodesPerRead limit, and refuses writes (variables are read-only).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from asyncua import Server, ua
from asyncua.crypto.permission_rules import User, UserRole
from asyncua.server.uaprocessor import UaProcessor
from asyncua.server.user_managers import UserManager

from simulators.water_plant import WaterPlant

log = logging.getLogger(__name__)

NAMESPACE = "urn:hacksky:water-plant"
#: variable -> (WaterPlant.reported key, OPC UA type)
VARIABLES: dict[str, tuple[str, ua.VariantType]] = {
    "Plant.Tank1.Level": ("tank1_level", ua.VariantType.Double),
    "Plant.Pump1.Running": ("pump1_running", ua.VariantType.Boolean),
    "Plant.Pump1.Flow": ("pump1_flow", ua.VariantType.Double),
    "Plant.Valve1.Opening": ("valve1_open", ua.VariantType.Double),
    "Plant.Outlet.Flow": ("outflow", ua.VariantType.Double),
    "Plant.Outlet.Pressure": ("pressure_out", ua.VariantType.Double),
}
#: each analog variable's engineering unit, as its EngineeringUnits property (UNECE codes namespace)
UNITS = {"Plant.Tank1.Level": "m", "Plant.Pump1.Flow": "m3/s", "Plant.Valve1.Opening": "%",
         "Plant.Outlet.Flow": "m3/s", "Plant.Outlet.Pressure": "bar"}
UNITS_NAMESPACE = "http://www.opcfoundation.org/UA/units/un/cefact"
WRITE_SERVICES = {"WriteRequest", "CallRequest", "AddNodesRequest", "DeleteNodesRequest", "AddReferencesRequest",
                  "DeleteReferencesRequest", "HistoryUpdateRequest"}
_TYPE_NAMES = {getattr(ua.ObjectIds, n): n.removesuffix("_Encoding_DefaultBinary")
               for n in dir(ua.ObjectIds) if n.endswith("Request_Encoding_DefaultBinary")}
_original_process = UaProcessor._process_message


async def _recording_process(self: UaProcessor, typeid: ua.NodeId, requesthdr: Any, seqhdr: Any, body: Any) -> Any:
    services = getattr(self.iserver, "hacksky_services", None)
    if services is not None:
        services[_TYPE_NAMES.get(typeid.Identifier, str(typeid))] += 1
    return await _original_process(self, typeid, requesthdr, seqhdr, body)


UaProcessor._process_message = _recording_process  # type: ignore[method-assign]


def sensor_node(k: int) -> str:
    """String NodeId identifier of sensor ``k`` of the bank (Plant/Sensors/S0000 ...)."""
    return f"Plant.Sensors.S{k:04d}"


def _nid(name: str, idx: int) -> ua.NodeId:
    return ua.NodeId(ua.String(name), ua.Int16(idx))


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self.users = users

    def get_user(self, iserver: Any, username: str | None = None, password: str | None = None,
                 certificate: Any = None) -> User | None:
        if username is not None:
            return User(role=UserRole.User) if self.users.get(username) == password else None
        # anonymous (or certificate) sessions only when no users are configured
        return None if self.users else User(role=UserRole.User)


class OpcUaPlant:
    """An OPC UA server publishing a :class:`WaterPlant`; ``port`` fixed at start."""

    def __init__(self, plant: WaterPlant | None = None, port: int = 0, host: str = "127.0.0.1",
                 max_nodes_per_read: int | None = None, certificate: Path | None = None,
                 private_key: Path | None = None, users: dict[str, str] | None = None,
                 secure_only: bool = False, update_every: float = 0.1, sensors: int = 0,
                 certificate_users_only: bool = False) -> None:
        self.plant = plant or WaterPlant(seed=7)
        self.host, self.port = host, port
        self.max_nodes_per_read = max_nodes_per_read
        self.certificate, self.private_key = certificate, private_key
        self.users = users or {}
        self.secure_only = secure_only
        self.update_every = update_every
        self.sensors = sensors
        self.certificate_users_only = certificate_users_only
        self._sensor_nodes: list[Any] = []
        self._tick = 0
        self.services: Counter[str] = Counter()
        self.read_sizes: list[int] = []
        self.nodes: dict[str, Any] = {}
        self.namespace_index = 0
        self._server: Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://{self.host}:{self.port}/hacksky/plant"

    async def start(self) -> None:
        """Build the address space and listen."""
        if not self.port:
            from simulators.server import free_port
            self.port = free_port(self.host)
        server = Server(user_manager=_Users(self.users))
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name("HackSky water plant")
        await server.set_application_uri("urn:hacksky:simulator:water-plant")
        policies = [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign]
        if self.certificate and self.private_key:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            server.set_security_policy(policies if self.secure_only
                                       else [ua.SecurityPolicyType.NoSecurity, *policies])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.certificate_users_only:  # X.509 user identity only: no anonymous, no user names
            server.set_identity_tokens([ua.X509IdentityToken])
        idx = await server.register_namespace(NAMESPACE)
        self.namespace_index = idx
        folders: dict[str, Any] = {}
        for name, (_, vtype) in VARIABLES.items():
            parent = server.nodes.objects
            parts = name.split(".")
            for depth in range(1, len(parts)):
                key = ".".join(parts[:depth])
                if key not in folders:
                    folders[key] = await parent.add_object(_nid(key, idx), ua.QualifiedName(parts[depth - 1], idx))
                parent = folders[key]
            initial = False if vtype == ua.VariantType.Boolean else 0.0
            self.nodes[name] = await parent.add_variable(_nid(name, idx), ua.QualifiedName(parts[-1], idx),
                                                         ua.Variant(initial, vtype))
            if name in UNITS:
                eu = ua.EUInformation(NamespaceUri=UNITS_NAMESPACE, DisplayName=ua.LocalizedText(UNITS[name]))
                await self.nodes[name].add_property(idx, "EngineeringUnits", eu)
        if self.sensors:
            bank = await server.nodes.objects.get_child(f"{idx}:Plant")
            bank = await bank.add_object(_nid("Plant.Sensors", idx), ua.QualifiedName("Sensors", idx))
            for k in range(self.sensors):
                name = sensor_node(k)
                start = ua.Variant(float(k), ua.VariantType.Double)
                self._sensor_nodes.append(await bank.add_variable(
                    _nid(name, idx), ua.QualifiedName(name.rsplit(".", 1)[1], idx), start))
        if self.max_nodes_per_read:
            limits = ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead
            limit = server.get_node(ua.NodeId(ua.Int32(limits)))
            await limit.write_value(ua.Variant(self.max_nodes_per_read, ua.VariantType.UInt32))
        server.iserver.hacksky_services = self.services  # type: ignore[attr-defined]
        self._limit_reads(server)
        await self._publish()
        await server.start()
        self._server = server
        log.info("OPC UA simulator listening on %s (water plant%s)", self.endpoint,
                 ", secured" if self.secure_only else "")
        self._task = asyncio.create_task(self._run(), name="opcua-plant")

    def _limit_reads(self, server: Server) -> None:
        service = server.iserver.attribute_service
        original = service.read

        def read(params: ua.ReadParameters) -> list[ua.DataValue]:
            self.read_sizes.append(len(params.NodesToRead))
            if self.max_nodes_per_read and len(params.NodesToRead) > self.max_nodes_per_read:
                raise ua.UaStatusCodeError(ua.StatusCodes.BadTooManyOperations)
            return original(params)

        service.read = read  # type: ignore[method-assign]

    async def _publish(self) -> None:
        self.plant.refresh(time.monotonic())
        for name, (key, vtype) in VARIABLES.items():
            raw = self.plant.reported[key]
            value = bool(raw) if vtype == ua.VariantType.Boolean else float(raw)
            await self.nodes[name].write_value(ua.Variant(value, vtype))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.update_every)
            await self._publish()
            await self._update_sensors()

    async def _update_sensors(self) -> None:
        """A tenth of the sensor bank changes per cycle: each sensor once a second at 100 ms cycles."""
        if not self._sensor_nodes:
            return
        self._tick += 1
        for k in range(self._tick % 10, len(self._sensor_nodes), 10):
            await self._sensor_nodes[k].write_value(ua.Variant(k + (self._tick % 1000) / 1000, ua.VariantType.Double))

    async def stop(self) -> None:
        """Stop publishing and close every session (as a PLC restart would)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._server is not None:
            await self._server.stop()
            self._server = None

    def write_services(self) -> set[str]:
        """Services received that change the server (must stay empty for the agent)."""
        return WRITE_SERVICES & set(self.services)
