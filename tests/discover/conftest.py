"""Running ``hacksky-edge discover`` in-process, and reading its YAML back with each point's comment."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from agent.discover.cli import add_discover_commands
from tests.clock import PINNED_DAY

#: the simulators' day starts here: their values do not depend on when the tests run
SIM_START = PINNED_DAY.timestamp()


@dataclass(frozen=True)
class Run:
    """One run of the command: exit status, stdout, stderr."""

    status: int
    out: str
    err: str

    def device(self) -> dict[str, Any]:
        """The one device of the YAML printed (which must parse)."""
        doc = yaml.safe_load(self.out)
        assert list(doc) == ["devices"] and len(doc["devices"]) == 1, doc
        return dict(doc["devices"][0])

    def comments(self) -> dict[str, str]:
        """Point name -> the comment after it."""
        found = {}
        for line in self.out.splitlines():
            if line.startswith("      - {"):
                entry, _, comment = line.partition("}  # ")
                found[yaml.safe_load(entry.removeprefix("      - ") + "}")["name"]] = comment
        return found


@pytest.fixture
def discover(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """``discover("opcua", url, "--depth", "2")``: the command as the CLI runs it."""
    parser = argparse.ArgumentParser(prog="hacksky-edge")
    add_discover_commands(parser.add_subparsers(dest="command", required=True))

    def run(*argv: str) -> Run:
        capsys.readouterr()
        args = parser.parse_args(["discover", *argv])
        status = int(args.func(args))
        captured = capsys.readouterr()
        return Run(status, captured.out, captured.err)

    return run
