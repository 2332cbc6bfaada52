"""A hostile OPC UA server (a real asyncua server on loopback) and a tap that keeps the bytes it sent.

The server publishes whatever DataValues it is given under ``ns=<idx>;s=<name>`` of namespace
``urn:hacksky:hostile``, with the name and certificate it is given. asyncua encodes a String with
``surrogateescape``, so a ``"\\udcff"`` in a value goes out as the raw byte 0xFF: invalid UTF-8
on the wire, as a misbehaving PLC would send it (:class:`WireTap` shows the bytes).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from asyncua import Server, ua
from asyncua.crypto.validator import CertificateValidator, CertificateValidatorOptions

from simulators.server import free_port

NAMESPACE = "urn:hacksky:hostile"
APPLICATION_URI = "urn:hacksky:hostile-plc"


class HostileOpcUaServer:
    """Serves ``values``; with a certificate, secured only; ``check_client_uri`` refuses a client whose
    ApplicationUri is not in its certificate (BadCertificateUriInvalid), as strict servers do."""

    def __init__(self, values: dict[str, ua.DataValue], name: str = "Hostile PLC",
                 certificate: Path | None = None, private_key: Path | None = None,
                 check_client_uri: bool = False, port: int = 0) -> None:
        self.values = values
        self.name = name
        self.certificate, self.private_key = certificate, private_key
        self.check_client_uri = check_client_uri
        self.port = port or free_port()
        self._server: Server | None = None
        self._nodes: dict[str, ua.NodeId] = {}

    @property
    def endpoint(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/hostile"

    async def start(self) -> None:
        """Build the address space and listen."""
        server = Server()
        await server.init()
        server.set_endpoint(self.endpoint)
        server.set_server_name(self.name)
        await server.set_application_uri(APPLICATION_URI)
        if self.certificate and self.private_key:
            await server.load_certificate(str(self.certificate))
            await server.load_private_key(str(self.private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        else:
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        if self.check_client_uri:  # time range and URI: what BadCertificateUriInvalid comes from
            server.set_certificate_validator(CertificateValidator(
                CertificateValidatorOptions.BASIC_VALIDATION | CertificateValidatorOptions.PEER_CLIENT).validate)
        idx = await server.register_namespace(NAMESPACE)
        for name, dv in self.values.items():
            node = await server.nodes.objects.add_variable(ua.NodeId(name, idx), ua.QualifiedName(name, idx),
                                                           dv.Value)
            await node.write_value(dv)
            self._nodes[name] = node.nodeid
        await server.start()
        self._server = server

    async def serve(self, values: dict[str, ua.DataValue]) -> None:
        """Hold ``values`` from now on (names given at start), as they are: no type check on the way in."""
        assert self._server is not None
        for name, dv in values.items():
            await self._server.write_attribute_value(self._nodes[name], dv)

    async def stop(self) -> None:
        """Close every session and stop listening."""
        if self._server is not None:
            await self._server.stop()
            self._server = None


T = TypeVar("T")


class ServerThread:
    """A :class:`HostileOpcUaServer` on its own event loop thread, to share across tests and examples
    (starting and stopping an asyncua server takes 2-3 s)."""

    def __init__(self, server: HostileOpcUaServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="hostile-opcua", daemon=True)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the server's loop and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=60)

    def __enter__(self) -> HostileOpcUaServer:
        self._thread.start()
        self.call(self.server.start())
        return self.server

    def __exit__(self, *exc: object) -> None:
        try:
            self.call(self.server.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)
            self._loop.close()


class WireTap:
    """A loopback TCP relay to ``port`` that keeps every byte the server sent back."""

    def __init__(self, port: int) -> None:
        self.target_port = port
        self.port = 0
        self.from_server = bytearray()
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, keep: bytearray | None) -> None:
            try:
                while data := await src.read(65536):
                    if keep is not None:
                        keep += data
                    dst.write(data)
                    await dst.drain()
            except OSError:
                pass
            finally:
                dst.close()

        await asyncio.gather(pump(reader, up_writer, None), pump(up_reader, writer, self.from_server))

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _text(value: object, vtype: ua.VariantType, status: int = ua.StatusCodes.Good) -> ua.DataValue:
    return ua.DataValue(ua.Variant(value, vtype), StatusCode=ua.StatusCode(status))


#: variable -> (what the hostile server holds, text stored, quality stored)
HOSTILE_TEXT: dict[str, tuple[ua.DataValue, str | None, str]] = {
    # "\udcff" is how asyncua spells the raw byte 0xFF: it goes out on the wire as that byte
    "Invalid": (_text("ok\udcff\udcfe!", ua.VariantType.String), "ok\ufffd\ufffd!", "uncertain:bad_encoding"),
    "Fine": (_text("Störung ✓", ua.VariantType.String), "Störung ✓", "good"),
    "Padded": (_text("PUMP-1\x00\x00\x00", ua.VariantType.String), "PUMP-1", "good"),
    "InnerNul": (_text("A\x00B", ua.VariantType.String), "A\ufffdB", "uncertain:bad_encoding"),
    "Long": (_text("é" * 300, ua.VariantType.String), "é" * 255, "uncertain:truncated"),
    "LongInvalid": (_text("\udcff" * 300, ua.VariantType.String), "\ufffd" * 255, "uncertain:bad_encoding"),
    "Bytes": (_text(b"\xff\xfeok", ua.VariantType.ByteString), "\ufffd\ufffdok", "uncertain:bad_encoding"),
    "Localized": (_text(ua.LocalizedText("Störung\udcff", "de"), ua.VariantType.LocalizedText), "Störung\ufffd",
                  "uncertain:bad_encoding"),
    "UncertainInvalid": (_text("x\udcff", ua.VariantType.String, ua.StatusCodes.UncertainLastUsableValue),
                         "x\ufffd", "uncertain:bad_encoding"),
    "UncertainFine": (_text("x", ua.VariantType.String, ua.StatusCodes.UncertainLastUsableValue), "x",
                      "uncertain:UncertainLastUsableValue"),
    "BadInvalid": (_text("x\udcff", ua.VariantType.String, ua.StatusCodes.BadSensorFailure), None,
                   "bad:BadSensorFailure"),
}
