"""The ``hacksky-edge`` command line: run, check, demo, simulate, init-db, status, train, evaluate."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.configload import ConfigError, load_config
from agent.detect.cli import add_commands as add_detection_commands
from agent.logsetup import setup_logging
from agent.settings import AgentConfig

if TYPE_CHECKING:
    from agent.service import Agent

log = logging.getLogger("agent")


def _load(path: str) -> AgentConfig | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return None


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def reload_from_file(agent: Agent, path: str) -> bool:
    """SIGHUP: re-read the map; an invalid file is refused and the running config kept."""
    from agent.systemd import notify

    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration:\n%s", exc)
        return False
    notify("RELOADING=1")
    try:
        await agent.reload(new)
    finally:
        notify("READY=1")
    return True


async def _run_agent(cfg: AgentConfig, duration: float | None, path: str) -> None:
    from agent.service import Agent

    stop = asyncio.Event()
    _stop_on_signals(stop)
    loop = asyncio.get_running_loop()
    if duration:
        loop.call_later(duration, stop.set)
    agent = Agent(cfg)
    reloads: set[asyncio.Task[bool]] = set()

    def on_hup() -> None:
        task = asyncio.create_task(reload_from_file(agent, path), name="reload")
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    await agent.run(stop)


def cmd_run(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Run the daemon until SIGTERM/SIGINT."""
    try:
        asyncio.run(_run_agent(cfg, args.duration, args.config))
    except Exception:
        log.exception("agent stopped by an unexpected error")
        return 1
    return 0


def cmd_check(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Validate a device map; exit 1 listing every error."""
    points = sum(len(d.points) for d in cfg.devices)
    sys.stdout.write(f"{args.config}: OK ({len(cfg.devices)} devices, {points} points)\n")
    return 0


def cmd_init_db(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Create or upgrade the central schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent import migrate
    from agent.central import make_engine

    engine = make_engine(cfg.central)
    try:
        revision = migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        sys.stderr.write(f"cannot migrate the central database: {getattr(exc, 'orig', None) or exc}\n")
        return 1
    sys.stdout.write(f"central schema at revision {revision}\n")
    return 0


def cmd_status(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Print the running agent's state (from its state file)."""
    from agent.statefile import read_state

    state = read_state(cfg.buffer.path)
    if state is None:
        sys.stderr.write(f"no state in {cfg.buffer.path}: has the agent run with this config?\n")
        return 1
    if args.json:
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return 0
    age = time.time() - state["updated"]
    central = state["central"]
    buffer = state["buffer"]
    last = central["last_flush"]
    lines = [
        f"gateway {state['gateway']} (pid {state['pid']}), state written {age:.0f}s ago"
        + ("  [STALE: agent not running?]" if age > 10 else ""),
        f"readings taken {state['readings_taken']}  ({state['readings_per_s']}/s)   open alerts {state['open_alerts']}",
        f"buffer  {buffer['readings']} readings, {buffer['events']} events waiting, {buffer['dropped']} dropped",
        f"central {central['state']}  {central['url']}  rows written {central['rows_written']}"
        f"  last flush {'never' if not last else f'{time.time() - last:.1f}s ago'}"
        + (f"  error: {central['error']}" if central["state"] == "down" else ""),
        "devices:",
    ]
    det = state.get("detection")
    if det:
        inc = det["open_detection"]
        lines.insert(-1, f"detection {det['rows_scored']} rows scored, {det['alarms']} in alarm, "
                         + (f"OPEN: {inc['attack_type']} {inc['confidence']:.0f}% on {', '.join(inc['signals'][:4])}"
                            if inc else "no open detection"))
    for device_id, d in state["devices"].items():
        lines.append(f"  {device_id:<20} {d['state']:<9} polls {d['polls']:<7} missed {d['missed_cycles']:<4} "
                     f"latency p50 {d['latency_ms_p50']:.1f} ms  lag p99 {d['lag_ms_p99']:.1f} ms"
                     + (f"  ({d['reason']})" if d["reason"] else ""))
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the built-in simulators standalone."""
    from simulators import run as simrun

    try:
        schedule = simrun.parse_schedule(args.at or [])
        sims = simrun.build(args.meters, args.meter_port, args.plant_port, args.host, args.scenario, schedule)
        if args.opcua:
            simrun.add_opcua(sims, args.opcua_port, args.host, Path(args.opcua_state) if args.opcua_secure else None,
                             args.opcua_user, os.environ.get("HACKSKY_SIM_OPCUA_PASSWORD"))
        if args.batadal:
            simrun.add_replay(sims, args.batadal, args.batadal_port, args.row_seconds, args.start_row,
                              host=args.host)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await simrun.serve(sims, stop)

    asyncio.run(main())
    return 0


def cmd_demo(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Simulators + agent on config/demo.yaml into a local SQLite file, with a live summary."""
    from agent.demo import run_demo

    return run_demo(cfg, args.duration, args.attack_after)


def cmd_import_csv(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Bulk-load historical readings of one device from a CSV into the central database."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent import migrate
    from agent.central import make_engine
    from agent.importer import CsvImportError, import_csv, parse_mapping
    from agent.writer import DeviceInfo

    configured = next((d for d in cfg.devices if d.id == args.device), None)
    device = (DeviceInfo(configured.id, configured.name, configured.type, configured.location, configured.protocol,
                         configured.address)
              if configured else DeviceInfo(args.device, args.device, "other", None, "import"))
    engine = make_engine(cfg.central)
    try:
        if cfg.central.auto_migrate:
            migrate.upgrade(engine)
        summary = import_csv(engine, cfg.gateway.id, device, args.file, parse_mapping(args.map), args.time_column,
                             frozenset(filter(None, args.skip.split(","))), progress=not args.quiet)
    except (CsvImportError, OSError) as exc:
        sys.stderr.write(f"cannot import: {exc}\n")
        return 1
    except SQLAlchemyError as exc:
        sys.stderr.write(f"central database refused the import: {getattr(exc, 'orig', None) or exc}\n")
        return 1
    finally:
        engine.dispose()
    sys.stdout.write(summary.text(args.file, args.device))
    return 0


def cmd_api(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Serve the central read API over the map's central database."""
    import os

    import uvicorn

    from agent.api.app import create_app
    from agent.central import make_engine

    token = os.environ.get("HACKSKY_API_TOKEN")
    if args.token_file:
        try:
            token = open(args.token_file, encoding="utf-8").read().strip()
        except OSError as exc:
            sys.stderr.write(f"cannot read --token-file: {exc}\n")
            return 1
    if not token:
        log.warning("no API token (HACKSKY_API_TOKEN or --token-file): the API is read-only")
    engine = make_engine(cfg.central)
    uvicorn.run(create_app(engine, token or None), host=args.listen, port=args.port, log_level="warning")
    engine.dispose()
    return 0


def cmd_opcua_cert(args: argparse.Namespace) -> int:
    """Generate the gateway's OPC UA client certificate (DER) and key (PEM)."""
    from drivers.opcua.security import make_certificate

    uri = args.uri or f"urn:hacksky-edge:{args.gateway}"
    cert, key = make_certificate(Path(args.out), uri, f"HackSky Edge {args.gateway}", args.hostname)
    sys.stdout.write(f"{cert} (application URI {uri}) and {key}; give {cert} to the server's trusted list\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Argument parser with every sub-command."""
    parser = argparse.ArgumentParser(prog="hacksky-edge", description=__doc__)
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING, ERROR")
    parser.add_argument("--log-format", default="text", choices=["text", "json"],
                        help="text lines (default) or one JSON object per line")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the agent daemon")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("check", help="validate a device map")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("init-db", help="create or upgrade the central schema")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser("status", help="show the running agent's state")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("simulate", help="run the built-in device simulators")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--meters", type=int, default=4, help="power meters (unit ids 1..N)")
    p.add_argument("--meter-port", type=int, default=15020)
    p.add_argument("--plant-port", type=int, default=15021)
    p.add_argument("--scenario", default="normal", help="water plant scenario at start")
    p.add_argument("--at", action="append", metavar="SECONDS:SCENARIO",
                   help="switch the plant scenario later, e.g. --at 60:pump_forced_frozen_level")
    p.add_argument("--opcua", action="store_true", help="also serve the water plant over OPC UA")
    p.add_argument("--opcua-port", type=int, default=15023)
    p.add_argument("--opcua-secure", action="store_true",
                   help="Basic256Sha256 Sign/SignAndEncrypt only (certificate made on first start)")
    p.add_argument("--opcua-state", default="simulator-state/opcua", help="where the server certificate is kept")
    p.add_argument("--opcua-user", help="require this user (password from $HACKSKY_SIM_OPCUA_PASSWORD)")
    p.add_argument("--batadal", metavar="CSV", help="also replay a BATADAL-format file as a PLC")
    p.add_argument("--batadal-port", type=int, default=15022)
    p.add_argument("--row-seconds", type=float, default=1.0, help="seconds per replayed row (an hour of data)")
    p.add_argument("--start-row", type=int, default=0, help="first row of the file to replay")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="simulators + agent + local SQLite, with a live summary")
    p.add_argument("-c", "--config", default="config/demo.yaml")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--attack-after", type=float, default=20.0,
                   help="seconds before the water plant attack scenario starts")
    p.set_defaults(func=cmd_demo)
    p = sub.add_parser("import-csv", help="bulk-load historical readings of one device from a CSV")
    p.add_argument("file")
    p.add_argument("--device", required=True, help="device id the readings belong to (registered if new)")
    p.add_argument("-c", "--config", required=True, help="device map: gateway id and central database")
    p.add_argument("--map", help="rename columns to point names: COLUMN=POINT,...")
    p.add_argument("--time-column", default="DATETIME")
    p.add_argument("--skip", default="ATT_FLAG", help="columns not imported (comma-separated)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_import_csv)

    p = sub.add_parser("api", help="serve the central read API (the HackSky dashboard endpoints)")
    p.add_argument("-c", "--config", required=True, help="device map whose central database to serve")
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--token-file", help="file holding the token for writes (else $HACKSKY_API_TOKEN)")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("opcua-cert", help="generate the OPC UA client certificate and key")
    p.add_argument("--gateway", required=True, help="gateway id: the certificate's URI is urn:hacksky-edge:<id>")
    p.add_argument("--out", default="/etc/hacksky-edge/opcua", help="directory for cert.der and key.pem")
    p.add_argument("--uri", help="application URI (default urn:hacksky-edge:<gateway>)")
    p.add_argument("--hostname", help="DNS name in the certificate (default: this host)")
    p.set_defaults(func=cmd_opcua_cert)

    add_detection_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hacksky-edge`` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if getattr(args, "config", None) is None:
        return int(args.func(args))
    cfg = _load(args.config)
    return 1 if cfg is None else int(args.func(args, cfg))


if __name__ == "__main__":
    raise SystemExit(main())
