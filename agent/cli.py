"""The ``hacksky-edge`` command line: run, check, demo, simulate, init-db, status, train, evaluate, evaluate-meters."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import termios
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from agent.configload import ConfigError, load_config
from agent.detect.cli import add_commands as add_detection_commands
from agent.detect.meters.cli import add_meter_commands
from agent.detect.robustness_cli import add_command as add_robustness_command
from agent.discover.cli import add_discover_commands
from agent.logsetup import setup_logging
from agent.profiles.cli import add_profile_commands
from agent.settings import AgentConfig

if TYPE_CHECKING:
    from agent.central.partitions import PartitionReport
    from agent.pipeline.service import Agent

log = logging.getLogger("agent")

#: exit status of a command refused for its configuration (or another input file), one line per
#: problem and no traceback: retrying cannot help (systemd: ``RestartPreventExitStatus=2``).
#: ``check`` exits 1 instead: for it an invalid map is the answer, not a failure.
EXIT_CONFIG = 2


def _load(path: str, check_secrets: bool = True) -> AgentConfig | None:
    try:
        return load_config(path, check_secrets=check_secrets)
    except ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return None


def _stop_on_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)


async def reload_from_file(agent: Agent, path: str) -> bool:
    """SIGHUP: re-read the map; an invalid file is refused and the running config kept."""
    from agent.pipeline.systemd import notify

    try:
        new = load_config(path)
    except ConfigError as exc:
        log.error("reload refused, keeping the running configuration:\n%s", exc)
        first = exc.issues[0] if exc.issues else None
        agent.reload_refused(f"{len(exc.issues)} problem(s) in the device map; first: {first}")
        return False
    notify("RELOADING=1")
    try:
        await agent.reload(new)
    finally:
        notify("READY=1")
    return True


async def _run_agent(cfg: AgentConfig, duration: float | None, path: str) -> None:
    from agent.pipeline.service import Agent

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
    """Validate a device map, its password files and variables; exit 1 listing every error.
    With ``--connect``, also log in to the central database (schema revision, the user's privileges),
    to each MQTT output's broker, and read every point of every enabled device once."""
    points = sum(len(d.points) for d in cfg.devices)
    devices = len(cfg.devices)
    counted = f"{devices} device{'s' * (devices != 1)}, {points} point{'s' * (points != 1)}"
    sys.stdout.write(f"{args.config}: OK ({counted})\n")
    if not args.connect:
        return 0
    from agent.central.privileges import check_privileges
    from agent.pointcheck import check_devices

    return max(check_central(cfg), check_privileges(cfg.central, sys.stdout), check_outputs(cfg),
               check_devices(cfg, sys.stdout))


def check_outputs(cfg: AgentConfig) -> int:
    """One line per MQTT output: its broker accepted the gateway's settings (TLS, user, password), or why
    not; exit 1 if one did not. The check logs in under its own client id (``...-check``): the
    running agent's session is never taken over."""
    from agent.sinks.mqtt.session import BrokerRefused, BrokerUnavailable, Session

    failed = 0
    for out in cfg.outputs:
        client_id = out.client_id_for(cfg.gateway.id)[:58] + "-check"
        session = Session(out, client_id, None, lambda _topic, _payload: None, [])
        try:
            session.open()
        except (BrokerRefused, BrokerUnavailable) as exc:
            kind = "refused the gateway's settings" if isinstance(exc, BrokerRefused) else "unreachable"
            sys.stderr.write(f"mqtt output {out.name} {out.url} {kind}: {exc}\n")
            failed = 1
            continue
        session.close()
        sys.stdout.write(f"mqtt output {out.name} {out.url}: connected (as {client_id})\n")
    return failed


def check_central(cfg: AgentConfig) -> int:
    """One line on the central database: reachable, credentials accepted, schema current; exit 1 if not."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent.central import migrate
    from agent.central.engine import make_engine, redact_url
    from agent.central.writer import error_text, is_config_error
    from agent.sinks.build import NULL_URL

    if cfg.central.url == NULL_URL:
        sys.stdout.write(f"central {NULL_URL}: readings are discarded after the buffer (benchmarks)\n")
        return 0
    where = redact_url(cfg.central.url)
    engine = make_engine(cfg.central)
    try:
        revision = migrate.current_revision(engine)
    except SQLAlchemyError as exc:
        kind = "refused the gateway's settings" if is_config_error(exc) else "is unreachable"
        sys.stderr.write(f"central database {where} {kind}: {error_text(exc)}\n")
        return 1
    finally:
        engine.dispose()
    head = migrate.head_revision()
    if revision == head:
        sys.stdout.write(f"central database {where}: connected, schema at revision {head}\n")
        return 0
    action = ("the agent migrates it at start" if cfg.central.auto_migrate
              else "run `hacksky-edge init-db` as a user allowed to alter it")
    sys.stdout.write(f"central database {where}: connected, schema at revision {revision or 'none'} "
                     f"(this agent needs {head}: {action})\n")
    return 0


def cmd_init_db(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Create or upgrade the central schema."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent.central import migrate
    from agent.central.engine import make_engine

    engine = make_engine(cfg.central)
    try:
        revision = migrate.upgrade(engine)
    except SQLAlchemyError as exc:
        sys.stderr.write(f"cannot migrate the central database: {getattr(exc, 'orig', None) or exc}\n")
        return 1
    sys.stdout.write(f"central schema at revision {revision}\n")
    return 0


def cmd_central_maintain(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Roll up the hours writers marked, then apply ``central.retention``; print what was done."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent.central import migrate
    from agent.central.engine import make_engine
    from agent.central.maintain import maintain

    engine = make_engine(cfg.central)
    try:
        revision, head = migrate.current_revision(engine), migrate.head_revision()
        if revision != head:
            sys.stderr.write(f"central schema at revision {revision or 'none'}, maintain needs {head}: "
                             "run `hacksky-edge init-db`\n")
            return 1
        report = maintain(engine, cfg.central.retention, backfill_marks=args.backfill)
    except SQLAlchemyError as exc:
        sys.stderr.write(f"maintain failed: {getattr(exc, 'orig', None) or exc}\n")
        return 1
    finally:
        engine.dispose()
    if not report.ran:
        sys.stdout.write("another maintain run holds the lock; nothing done\n")
        return 0
    deleted = ", ".join(f"{table} {rows}" for table, rows in report.deleted.items() if rows) or "nothing"
    backfilled = f"marked {report.marks_backfilled} device-hours of the raw table; " if args.backfill else ""
    expired = (f" ({report.marks_expired} marks of hours past the raw retention dropped)"
               if report.marks_expired else "")
    sys.stdout.write(f"{backfilled}rolled up {report.hours_rebuilt} device-hours "
                     f"({report.readings_rolled_up} readings), {report.marks_removed} done{expired}; "
                     f"deleted past retention: {deleted}; {_partitions_done(report.partitions)}"
                     f"{report.seconds:.1f} s\n")
    return 0


def _partitions_done(report: PartitionReport) -> str:
    """``readings days: added p20261201..p20261204, dropped p20261030 (~864000 rows); `` or nothing."""
    done = []
    if report.added:
        done.append(f"added {report.added[0]}..{report.added[-1]}")
    if report.dropped:
        done.append(f"dropped {', '.join(report.dropped)} (~{sum(report.dropped.values())} rows)")
    if report.error:
        done.append(f"not changed this run: {report.error}")
    return f"readings days: {', '.join(done)}; " if done else ""


def cmd_central_grants(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Print the SQL creating least-privilege roles (gateway, maintain, api, reader) on the map's database."""
    from sqlalchemy.engine import make_url

    from agent.central.grants import grants_sql

    url = make_url(cfg.central.url)
    if not url.get_backend_name().startswith(("mysql", "mariadb")) or not url.database:
        sys.stderr.write("grants are for a MySQL/MariaDB central database named in central.url "
                         "(mysql+pymysql://user@host:3306/hacksky)\n")
        return 1
    sys.stdout.write("\n".join(grants_sql(url.database)) + "\n")
    return 0


#: exit status of ``status`` when the agent is not running (as ``systemctl status``)
EXIT_NOT_RUNNING = 3


def _process_gone(pid: object) -> bool:
    """True when no process ``pid`` exists (another user's process exists: signal 0 is refused)."""
    if not isinstance(pid, int) or pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def cmd_status(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Print the agent's state (from its state file); exit 3 when the agent that wrote it is gone."""
    from agent.pipeline.statefile import read_state

    state = read_state(cfg.buffer.path)
    if state is None:
        sys.stderr.write(f"no state in {cfg.buffer.path}: has the agent run with this config?\n")
        return 1
    code = 0
    gone = _process_gone(state.get("pid"))
    if gone:
        sys.stderr.write(f"agent not running: process {state.get('pid')} is gone; the state below is its last, "
                         f"written {time.time() - state['updated']:.0f}s ago\n")
        code = EXIT_NOT_RUNNING
    if args.json:
        sys.stdout.write(json.dumps(state, indent=2) + "\n")
        return code
    age = time.time() - state["updated"]
    central = state["central"]
    buffer = state["buffer"]
    last = central["last_flush"]
    lines = [
        f"gateway {state['gateway']} (pid {state['pid']}), state written {age:.0f}s ago"
        + ("  [NOT RUNNING: as it was when it stopped]" if gone else "  [STALE: agent not responding?]"
           if age > 10 else ""),
        f"readings taken {state['readings_taken']}  ({state['readings_per_s']}/s)"
        + (f", {state.get('readings_thinned', 0)} not stored (deadband)" if state.get("readings_thinned") else "")
        + f"   open alerts {state['open_alerts']}",
        f"buffer  {buffer['readings']} readings, {buffer['events']} events waiting, {buffer['dropped']} dropped",
        f"central {central['state']}  {central['url']}  rows written {central['rows_written']}"
        f"  last flush {'never' if not last else f'{time.time() - last:.1f}s ago'}"
        + (f"  clock {offset:+.3f}s" if (offset := central.get("clock_offset_s")) is not None else "")
        + (f"  node {node} ({central.get('failovers', 0)} failovers)" if (node := central.get("node")) else "")
        + (f"  STALLED for {central.get('stalled_for_s', 0):.0f}s" if central.get("stalled") else "")
        + (f"  error: {central['error']}" if central["state"] != "up" and central["error"] else ""),
        "devices:",
    ]
    for name, out in (state.get("outputs") or {}).items():
        lines.insert(-1, f"output  {name} {out['state']}  {out['url']} ({out['format']})  published {out['readings']}"
                         f"  pending {out['pending']}" + (f"  error: {out['error']}" if out["state"] != "up"
                                                          and out["error"] else ""))
    processes = [f"writer pid {central['writer_pid']}"] if central.get("writer_pid") else []
    polling = state.get("polling") or {"pids": [], "restarts": 0}
    if polling["pids"]:
        processes.append(f"polling pids {', '.join(str(pid or '-') for pid in polling['pids'])}")
    restarts = central.get("writer_restarts", 0) + polling["restarts"]
    if processes:
        lines.insert(-1, "processes " + ", ".join(processes) + (f"  ({restarts} restarted)" if restarts else ""))
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
    return code


def cmd_schema(args: argparse.Namespace) -> int:
    """Write the device map's JSON Schema."""
    from agent.schema import device_map_schema

    text = json.dumps(device_map_schema(), indent=2) + "\n"
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
        sys.stderr.write(f"wrote {args.output}; first line of a device map: "
                         f"# yaml-language-server: $schema={args.output}\n")
    else:
        sys.stdout.write(text)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """Run the built-in simulators standalone."""
    from agent import profiles
    from simulators import run as simrun

    try:
        schedule = simrun.parse_schedule(args.at or [])
        profile = profiles.raw(profiles.load(args.profile).name) if args.profile else None
        sims = simrun.build(args.meters, args.meter_port, args.plant_port, args.host, args.scenario, schedule,
                            profile, "rtu_over_tcp" if args.rtu else "tcp", args.serial,
                            args.baudrate, args.parity)
        if args.opcua:
            simrun.add_opcua(sims, args.opcua_port, args.host, Path(args.opcua_state) if args.opcua_secure else None,
                             args.opcua_user, os.environ.get("HACKSKY_SIM_OPCUA_PASSWORD"))
        if args.batadal:
            simrun.add_replay(sims, args.batadal, args.batadal_port, args.row_seconds, args.start_row,
                              host=args.host)
    except (ValueError, OSError) as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    except KeyError as exc:  # an unknown profile
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2

    async def main() -> None:
        stop = asyncio.Event()
        _stop_on_signals(stop)
        await simrun.serve(sims, stop)

    try:
        asyncio.run(main())
    except (OSError, RuntimeError, ValueError, termios.error) as exc:  # a port taken, a serial line refusing
        sys.stderr.write(f"the simulators could not start: {exc} (a port in use? --meter-port, --plant-port; "
                         "a serial line: --parity, --baudrate)\n")
        return 2
    return 0


def cmd_demo(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Simulators + agent on config/demo.yaml into a local SQLite file, with a live summary."""
    from agent.demo import run_demo

    return run_demo(cfg, args.duration, args.attack_after, args.dashboard_port)


def cmd_import_csv(args: argparse.Namespace, cfg: AgentConfig) -> int:
    """Bulk-load historical readings of one device from a CSV into the central database."""
    from sqlalchemy.exc import SQLAlchemyError

    from agent.central import migrate
    from agent.central.engine import make_engine
    from agent.central.importer import CsvImportError, import_csv, parse_mapping
    from agent.records import DeviceInfo

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
    from agent.api.guard import AccessConfigError, load_tokens
    from agent.central.engine import make_engine

    engine = make_engine(cfg.central)
    try:
        tokens = load_tokens(args.token_file, args.read_token_file, os.environ)
        app = create_app(engine, tokens.write, read_token=tokens.read, allowed_hosts=args.allowed_host)
    except AccessConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        engine.dispose()
        return 1
    if tokens.write is None:
        log.warning("no API token (HACKSKY_API_TOKEN or --token-file): the API is read-only")
    uvicorn.run(app, host=args.listen, port=args.port, log_level="warning")
    engine.dispose()
    return 0


def cmd_opcua_cert(args: argparse.Namespace) -> int:
    """Generate the gateway's OPC UA client certificate (DER) and key (PEM)."""
    from drivers.opcua.security import make_certificate

    uri = args.uri or f"urn:hacksky-edge:{args.gateway}"
    try:
        cert, key = make_certificate(Path(args.out), uri, f"HackSky Edge {args.gateway}", args.hostname,
                                     force=args.force)
    except FileExistsError as exc:
        sys.stderr.write(f"{exc} (use --force to replace cert.der and key.pem)\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"cannot write the certificate: {exc}\n")
        return 1
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
    p.add_argument("--connect", action="store_true", help="also log in to the central database")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("schema", help="write the device map's JSON Schema (completion and checks in editors)",
                       description="Editors with the YAML language server (VS Code's YAML extension, Neovim, "
                                   "JetBrains) complete and check a map whose first line is "
                                   "'# yaml-language-server: $schema=hacksky-edge.schema.json'.")
    p.add_argument("-o", "--output", metavar="FILE", help="write it here (default: standard output)")
    p.set_defaults(func=cmd_schema)

    p = sub.add_parser("init-db", help="create or upgrade the central schema")
    p.add_argument("-c", "--config", required=True)
    p.set_defaults(func=cmd_init_db)

    p = sub.add_parser("central", help="tasks on the central database (run on a central host)")
    central = p.add_subparsers(dest="central_command", required=True)
    p = central.add_parser("maintain", help="build rollups of new and late readings, delete past retention "
                                            "(idempotent; safe from several hosts at once)")
    p.add_argument("-c", "--config", required=True, help="a map whose central: section names the database")
    p.add_argument("--backfill", action="store_true",
                   help="first mark every hour the raw table holds (once, after upgrading a database that had "
                        "readings before revision 0004)")
    p.set_defaults(func=cmd_central_maintain)
    p = central.add_parser("grants", help="print the SQL for least-privilege roles: gateway, maintain, api, reader")
    p.add_argument("-c", "--config", required=True, help="a map whose central.url names the database")
    p.set_defaults(func=cmd_central_grants)

    p = sub.add_parser("status", help="show the running agent's state")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("simulate", help="run the built-in device simulators",
                       description="Power meters and a water-plant PLC over Modbus TCP (register maps: "
                                   "README, section Simulators), optionally OPC UA and a BATADAL replay.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    p.add_argument("--meters", type=int, default=4,
                   help="power meters, served as unit ids 1..N on --meter-port (default: %(default)s)")
    p.add_argument("--meter-port", type=int, default=15020, help="Modbus port of the meters (default: %(default)s)")
    p.add_argument("--plant-port", type=int, default=15021,
                   help="Modbus port of the water plant PLC, unit id 1 (default: %(default)s)")
    p.add_argument("--profile", metavar="NAME",
                   help="the meters impersonate this meter profile (hacksky-edge profiles), at its addresses "
                        "and in its encoding")
    p.add_argument("--rtu", action="store_true", help="the meters speak Modbus RTU over TCP (a converter)")
    p.add_argument("--serial", metavar="DEVICE",
                   help="the meters answer Modbus RTU on this serial device instead of TCP")
    p.add_argument("--baudrate", type=int, default=19200, help="--serial: the line's speed (default: %(default)s)")
    p.add_argument("--parity", choices=["none", "even", "odd"], default="even",
                   help="--serial: the line's parity (default: %(default)s; a pty pair takes none only)")
    p.add_argument("--scenario", default="normal",
                   help="water plant scenario at start: normal, pump_forced_frozen_level, flow_spoof or "
                        "level_spoof (default: %(default)s)")
    p.add_argument("--at", action="append", metavar="SECONDS:SCENARIO",
                   help="switch the plant scenario later, e.g. --at 60:pump_forced_frozen_level (repeatable)")
    p.add_argument("--opcua", action="store_true", help="also serve the water plant over OPC UA")
    p.add_argument("--opcua-port", type=int, default=15023, help="OPC UA port (default: %(default)s)")
    p.add_argument("--opcua-secure", action="store_true",
                   help="Basic256Sha256 Sign/SignAndEncrypt only (certificate made on first start)")
    p.add_argument("--opcua-state", default="simulator-state/opcua",
                   help="where the server certificate is kept (default: %(default)s)")
    p.add_argument("--opcua-user", help="require this user (password from $HACKSKY_SIM_OPCUA_PASSWORD)")
    p.add_argument("--batadal", metavar="CSV", help="also replay a BATADAL-format file as a PLC")
    p.add_argument("--batadal-port", type=int, default=15022,
                   help="Modbus port of the BATADAL replay, unit id 1 (default: %(default)s)")
    p.add_argument("--row-seconds", type=float, default=1.0,
                   help="seconds per replayed row, i.e. per hour of data (default: %(default)s)")
    p.add_argument("--start-row", type=int, default=0, help="first row of the file to replay (default: %(default)s)")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("demo", help="simulators + agent + local SQLite, with a live summary")
    p.add_argument("-c", "--config", default="config/demo.yaml",
                   help="the demo's device map (default: config/demo.yaml)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: Ctrl-C)")
    p.add_argument("--attack-after", type=float, default=20.0,
                   help="seconds before the water plant attack scenario starts (default: 20)")
    p.add_argument("--dashboard-port", type=int, default=8080,
                   help="serve the API and dashboard on 127.0.0.1:PORT while the demo runs; 0: none "
                        "(default: %(default)s)")
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
    p.add_argument("--read-token-file",
                   help="file holding a token every GET but /api/health then needs (else $HACKSKY_API_READ_TOKEN)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="HOST[:PORT]",
                   help="also answer to this Host (a proxy's or DNS name; repeatable); by default only "
                        "localhost, 127.0.0.1, [::1] and the bound address")
    p.set_defaults(func=cmd_api)

    p = sub.add_parser("opcua-cert", help="generate the OPC UA client certificate and key")
    p.add_argument("--gateway", required=True, help="gateway id: the certificate's URI is urn:hacksky-edge:<id>")
    p.add_argument("--out", default="/etc/hacksky-edge/opcua", help="directory for cert.der and key.pem")
    p.add_argument("--uri", help="application URI (default urn:hacksky-edge:<gateway>)")
    p.add_argument("--hostname", help="DNS name in the certificate (default: this host)")
    p.add_argument("--force", action="store_true", help="replace an existing cert.der and key.pem")
    p.set_defaults(func=cmd_opcua_cert)

    add_detection_commands(sub)
    add_meter_commands(sub)
    add_robustness_command(sub)
    add_profile_commands(sub)
    add_discover_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``hacksky-edge`` console script."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if getattr(args, "config", None) is None:
        return int(args.func(args))
    # status only reads the state file: it needs no password (and runs as any user)
    cfg = _load(args.config, check_secrets=args.command != "status")
    if cfg is None:
        return 1 if args.command == "check" else EXIT_CONFIG
    try:
        return int(args.func(args, cfg))
    except ConfigError as exc:  # an input file the map points to (the state file) cannot be used
        sys.stderr.write(f"{exc}\n")
        return EXIT_CONFIG


if __name__ == "__main__":
    raise SystemExit(main())
