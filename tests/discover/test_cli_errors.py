"""Failures are one line on stderr naming the target and the cause, exit 2, no traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable

import pytest

from simulators.server import free_port
from tests.discover.conftest import Run
from tests.helpers import ROOT

#: the command as hacksky-edge runs it: its logging set-up (third-party loggers quiet), then the function
MAIN = """
import argparse, sys
from agent.discover.cli import add_discover_commands
from agent.logsetup import setup_logging
parser = argparse.ArgumentParser(prog="hacksky-edge")
add_discover_commands(parser.add_subparsers(dest="command", required=True))
args = parser.parse_args(sys.argv[1:])
setup_logging("INFO")
sys.exit(args.func(args))
"""


def test_unreachable_endpoint_and_host_are_one_line_each() -> None:
    port = free_port()  # nothing listens there
    for argv, expected in (
            (["opcua", f"opc.tcp://127.0.0.1:{port}/plant", "--timeout", "2"],
             f"cannot open a session on opc.tcp://127.0.0.1:{port}/plant: connection refused\n"),
            (["modbus", "127.0.0.1", "--port", str(port), "--timeout", "2"],
             f"cannot reach 127.0.0.1:{port}: connection refused\n")):
        done = subprocess.run([sys.executable, "-c", MAIN, "discover", *argv], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
        assert (done.returncode, done.stdout, done.stderr) == (2, "", expected)


@pytest.mark.parametrize(("argv", "message"), [
    (["opcua", "http://plc:4840"], "'http://plc:4840' is not an OPC UA endpoint: opc.tcp://host:4840/path"),
    (["opcua", "opc.tcp://[::1:4840"], "'opc.tcp://[::1:4840' is not an OPC UA endpoint: opc.tcp://host:4840/path"),
    (["opcua", "opc.tcp://plc:4840", "--policy", "Basic256Sha256"],
     "--policy Basic256Sha256 needs --certificate and --private-key (hacksky-edge opcua-cert makes them)"),
    (["opcua", "opc.tcp://plc:4840", "--mode", "Sign"], "--policy None needs --mode None"),
    (["opcua", "opc.tcp://plc:4840", "--username", "op"], "a username login needs both --username and --password-env"),
    (["opcua", "opc.tcp://plc:4840", "--username", "op", "--password-env", "HACKSKY_TEST_UNSET_PASSWORD"],
     "--password-env HACKSKY_TEST_UNSET_PASSWORD: the variable is not set"),
    (["modbus"], "give a HOST (Modbus TCP, or --rtu for RTU over TCP) or --serial DEVICE, not both"),
    (["modbus", "plc", "--range", "20-10"],
     "--range '20-10': give FIRST-LAST with 0 <= FIRST <= LAST <= 65535, e.g. 0-199"),
    (["modbus", "plc", "--tables", "holding,registers"],
     "--tables 'holding,registers': choose from holding,input,coil,discrete"),
])
def test_bad_options_are_refused_before_connecting(argv: list[str], message: str,
                                                   discover: Callable[..., Run]) -> None:
    assert discover(*argv) == Run(2, "", message + "\n")
