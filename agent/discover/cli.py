"""``hacksky-edge discover opcua|modbus``: find a device's points, read-only, and print them as device-map YAML.

The YAML goes to stdout; a failure is one line on stderr naming the target and the cause, exit 2.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agent.discover import DiscoveryError
from agent.settings import HOST_PATTERN

if TYPE_CHECKING:
    from agent.discover.modbus import ProbePlan
    from drivers.opcua.spec import Endpoint

#: exit status of a discovery that could not run (bad options, unreachable or silent device)
EXIT_FAILED = 2
TABLES = ("holding", "input", "coil", "discrete")


def cmd_discover_opcua(args: argparse.Namespace) -> int:
    """Browse an OPC UA server and print its variables as ``points:`` of an ``opcua`` device."""
    # here, not at the top: building the CLI's parser need not import asyncua (~0.35 s)
    from agent.discover.opcua import BrowseScope, discover
    from agent.discover.render import document, opcua_device, opcua_header, opcua_points, point_name

    try:
        endpoint = _endpoint(args)
        scope = BrowseScope(args.root, args.depth, args.match, args.include_standard, args.max_nodes)
        inventory = asyncio.run(discover(endpoint, scope))
    except DiscoveryError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FAILED
    device_id = args.id or point_name(f"opcua-{urlsplit(endpoint.url).hostname}")
    device = opcua_device(endpoint, device_id, args.password_env, args.allow_plaintext_password)
    sys.stdout.write(document(opcua_header(inventory), device, opcua_points(inventory.variables)))
    if not inventory.variables:
        sys.stderr.write(f"no variable under {args.root} within {args.depth} level(s) matches {args.match!r}\n")
    return 0


def cmd_discover_modbus(args: argparse.Namespace) -> int:
    """Probe a Modbus unit's tables and print the proposed points of a ``modbus`` device."""
    from agent.discover.guess import propose
    from agent.discover.match import matching_profiles
    from agent.discover.modbus import probe
    from agent.discover.render import document, modbus_device, modbus_header, modbus_points, point_name

    try:
        plan = _plan(args)
        scan = asyncio.run(probe(plan))
    except DiscoveryError as exc:
        sys.stderr.write(f"{exc}\n")
        return EXIT_FAILED
    proposals = [p for table in scan.tables for p in propose(table)]
    device_id = args.id or point_name(f"modbus-{Path(plan.link.host).name}-{plan.unit}")
    matches = matching_profiles(scan)[:3]
    header = modbus_header(scan, proposals) + (
        ["profiles whose points all answer here, the one explaining most of what answered first "
         "(a known meter: `profile: NAME` instead of the points below; hacksky-edge profiles show NAME):"]
        + [f"  {m.name}: {m.answered} of its {m.in_range} points in the range answer, covering {m.covered:.0%} "
           "of the registers that answered" for m in matches] if matches else [])
    sys.stdout.write(document(header, modbus_device(plan.link, plan.unit, device_id), modbus_points(proposals)))
    if not proposals:
        sys.stderr.write(f"no address {plan.first}-{plan.last} of {', '.join(plan.tables)} answered: check --unit "
                         "and --port (default 502); meters often keep their registers far from 0 (ABB at 20480, "
                         "SunSpec at 40000): the manual, or `hacksky-edge profiles show NAME` for a known meter, "
                         "says where (--range)\n")
    return 0


def _endpoint(args: argparse.Namespace) -> Endpoint:
    """The driver's :class:`Endpoint` from the options, or :class:`DiscoveryError` saying what is missing."""
    from drivers.opcua.spec import Endpoint

    try:
        host = urlsplit(args.endpoint).hostname
    except ValueError:  # an unclosed [IPv6 literal
        host = None
    if not args.endpoint.startswith("opc.tcp://") or not host:
        raise DiscoveryError(f"{args.endpoint!r} is not an OPC UA endpoint: opc.tcp://host:4840/path")
    mode = args.mode or ("None" if args.policy == "None" else "SignAndEncrypt")
    if (args.policy == "None") != (mode == "None"):
        raise DiscoveryError(f"--policy {args.policy} needs --mode "
                             + ("None" if args.policy == "None" else "Sign or SignAndEncrypt"))
    if args.policy != "None" and (args.certificate is None or args.private_key is None):
        raise DiscoveryError(f"--policy {args.policy} needs --certificate and --private-key "
                             "(hacksky-edge opcua-cert makes them)")
    password = None
    if (args.username is None) != (args.password_env is None):
        raise DiscoveryError("a username login needs both --username and --password-env")
    if args.username is not None:
        password = os.environ.get(args.password_env)
        if password is None:
            raise DiscoveryError(f"--password-env {args.password_env}: the variable is not set")
        if mode != "SignAndEncrypt" and not args.allow_plaintext_password:
            raise DiscoveryError(f"a password over security mode {mode} is readable on the wire: use "
                                 "--policy Basic256Sha256 --mode SignAndEncrypt (or --allow-plaintext-password)")
    return Endpoint(args.endpoint, timeout=args.timeout, policy=args.policy, security_mode=mode,
                    certificate=args.certificate, private_key=args.private_key, trust_dir=args.trust_dir,
                    identity="username" if args.username else "anonymous", username=args.username,
                    password=password)


def _address_range(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", text)
    first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
    if not match or not first <= last <= 65535:
        raise DiscoveryError(f"--range {text!r}: give FIRST-LAST with 0 <= FIRST <= LAST <= 65535, e.g. 0-199")
    return first, last


def _plan(args: argparse.Namespace) -> ProbePlan:
    """The probe's plan from the options, or :class:`DiscoveryError` saying what is wrong."""
    from agent.discover.modbus import ProbePlan
    from drivers.modbus.connection import Link

    if (args.host is None) == (args.serial is None):
        raise DiscoveryError("give a HOST (Modbus TCP, or --rtu for RTU over TCP) or --serial DEVICE, not both")
    if args.host is not None and not re.match(HOST_PATTERN, args.host):
        raise DiscoveryError(f"{args.host!r} is not a host name or address")
    if args.serial is not None and args.rtu:
        raise DiscoveryError("--rtu is for RTU frames over TCP; a serial line always carries RTU")
    tables = tuple(dict.fromkeys(t.strip() for t in args.tables.split(",") if t.strip()))
    unknown = [t for t in tables if t not in TABLES]
    if unknown or not tables:
        raise DiscoveryError(f"--tables {args.tables!r}: choose from {','.join(TABLES)}")
    first, last = _address_range(args.range)
    turnaround = 0.0
    if args.serial is not None:
        link = Link("serial", args.serial, baudrate=args.baudrate, parity=args.parity)
        # as ModbusDevice.line_turnaround: 3.5 characters of 11 bits, at least 1.75 ms
        turnaround = max(0.00175, 3.5 * (10 + (args.parity != "none")) / args.baudrate)
    else:
        link = Link("rtu_over_tcp" if args.rtu else "tcp", args.host, args.port)
    return ProbePlan(link, args.unit, first, last, tables, args.block, args.timeout, args.wait, turnaround)


def _seconds(minimum: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        value = float(text)
        if not value >= minimum:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text}: give seconds, at least {minimum:g}")
        return value
    return parse


def _count(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is not within {low}..{high}")
        return value
    return parse


def add_discover_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``discover opcua ENDPOINT ...`` and ``discover modbus HOST ...``."""
    p = sub.add_parser("discover", help="find a device's points, read-only, and print device-map YAML",
                       description="Browse an OPC UA server or probe a Modbus device without writing anything, "
                                   "and print a device entry with its points, ready to paste into a device map.")
    kinds = p.add_subparsers(dest="discover_protocol", required=True, metavar="{opcua,modbus}")

    o = kinds.add_parser("opcua", help="browse an OPC UA server (Browse and Read services only)",
                         description="Browse from /Objects (or --root) and list every variable as a point "
                                     "with its nsu= NodeId, unit, data type, access level and current value.")
    o.add_argument("endpoint", help="opc.tcp://host:4840/path")
    o.add_argument("--root", default="/Objects", help="browse path to start from, e.g. /Objects/2:Plant "
                                                      "(default %(default)s)")
    o.add_argument("--depth", type=_count(1, 64), default=6, help="levels below the root (default %(default)s)")
    o.add_argument("--match", default="*", help="glob on the browse name or dotted path, e.g. '*Level' or "
                                                "'Plant.Tank1.*' (default: every variable)")
    o.add_argument("--policy", choices=("None", "Basic256Sha256"), default="None")
    o.add_argument("--mode", choices=("None", "Sign", "SignAndEncrypt"),
                   help="default: SignAndEncrypt with a policy, else None")
    o.add_argument("--certificate", type=Path, help="client certificate (DER or PEM; hacksky-edge opcua-cert)")
    o.add_argument("--private-key", type=Path, help="its private key")
    o.add_argument("--trust-dir", type=Path, help="trusted server certificates; without it the server's "
                                                  "certificate is accepted and its fingerprint printed")
    o.add_argument("--username")
    o.add_argument("--password-env", metavar="VAR", help="environment variable holding the password")
    o.add_argument("--allow-plaintext-password", action="store_true",
                   help="send the password over a channel that does not encrypt")
    o.add_argument("--include-standard", action="store_true",
                   help="also namespace 0 (the server's own Server object and diagnostics)")
    o.add_argument("--max-nodes", type=_count(1, 10_000_000), default=10_000,
                   help="stop browsing after this many nodes (default %(default)s)")
    o.add_argument("--timeout", type=_seconds(0.01), default=5.0, help="seconds per request (default %(default)s)")
    o.add_argument("--id", help="the device id in the YAML (default opcua-<host>)")
    o.set_defaults(func=cmd_discover_opcua)

    m = kinds.add_parser("modbus", help="probe a Modbus device (read function codes 1-4 only)",
                         description="Read the address range of each table in blocks (refused blocks split down "
                                     "to single addresses), twice a moment apart, and propose points: float32 "
                                     "with its word order, counters, uint16/int16, bits.")
    m.add_argument("host", nargs="?", help="host name or address (or --serial)")
    m.add_argument("--port", type=_count(1, 65535), default=502, help="TCP port (default %(default)s)")
    m.add_argument("--unit", type=_count(0, 255), default=1, help="unit id (default %(default)s)")
    m.add_argument("--range", default="0-199", help="addresses FIRST-LAST, 0-based (default %(default)s)")
    m.add_argument("--tables", default=",".join(TABLES), help="which tables (default %(default)s)")
    m.add_argument("--rtu", action="store_true", help="RTU frames over TCP (a serial-to-Ethernet converter)")
    m.add_argument("--serial", metavar="DEVICE", help="RTU on a serial port, e.g. /dev/ttyUSB0")
    m.add_argument("--baudrate", type=_count(300, 1_000_000), default=19200, help="(default %(default)s)")
    m.add_argument("--parity", choices=("none", "even", "odd"), default="even", help="(default %(default)s)")
    m.add_argument("--block", type=_count(1, 125), default=100, help="registers per request (default %(default)s)")
    m.add_argument("--timeout", type=_seconds(0.01), default=1.0, help="seconds per request (default %(default)s)")
    m.add_argument("--wait", type=_seconds(0.0), default=1.0,
                   help="seconds between the two reads that tell counters (default %(default)s)")
    m.add_argument("--id", help="the device id in the YAML (default modbus-<host>-<unit>)")
    m.set_defaults(func=cmd_discover_modbus)
