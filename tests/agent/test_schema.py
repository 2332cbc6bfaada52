"""``hacksky-edge schema``: the JSON Schema editors check device maps with agrees with the loader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from agent import profiles
from agent.cli import main
from agent.schema import device_map_schema

ROOT = Path(__file__).resolve().parents[2]
MAPS = sorted((ROOT / "config").glob("*.yaml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = device_map_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def errors(validator: jsonschema.protocols.Validator, doc: Any) -> list[str]:
    return sorted(f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc))


@pytest.mark.parametrize("path", MAPS, ids=lambda p: p.name)
def test_every_shipped_map_is_valid_under_the_schema(validator: jsonschema.protocols.Validator, path: Path) -> None:
    assert errors(validator, yaml.safe_load(path.read_text())) == []


def test_durations_env_references_and_profiles_are_what_the_loader_takes(
        validator: jsonschema.protocols.Validator) -> None:
    good = {"gateway": {"id": "gw"}, "defaults": {"interval": "200ms", "timeout": 0.5},
            "buffer": {"max_size": "512MiB"},
            "devices": [{"id": "m1", "host": "${METER_HOST}", "port": "${METER_PORT:-502}", "profile": "abb-b23"},
                        {"id": "m2", "transport": "serial", "port": "/dev/ttyUSB0", "baudrate": 9600,
                         "parity": "none", "points": [{"name": "x", "address": 0}]}]}
    assert errors(validator, good) == []
    bad = {"gateway": {"id": "gw"}, "defaults": {"interval": "fast"},
           "devices": [{"id": "m1", "host": "h", "profile": "No Such Meter", "pionts": []}]}
    found = errors(validator, bad)
    assert any(e.startswith("defaults.interval:") for e in found), found
    assert any(e.startswith("devices.0:") for e in found), found  # profile and the misspelt key
    assert errors(validator, {"devices": []}) == [": 'gateway' is a required property"]
    # a point needs its address, unless it overrides a profile's point of that name
    override = {"gateway": {"id": "gw"}, "devices": [{"id": "m", "host": "h", "profile": "abb-b23",
                                                      "points": [{"name": "active_power", "limits": {"max": 9}}]}]}
    assert errors(validator, override) == []
    del override["devices"][0]["profile"]  # type: ignore[attr-defined]
    assert [e.split(":")[0] for e in errors(validator, override)] == ["devices.0"]


def test_the_command_writes_the_schema_with_every_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "hacksky-edge.schema.json"
    assert main(["schema", "-o", str(out)]) == 0
    assert "# yaml-language-server: $schema=" in capsys.readouterr().err
    schema = json.loads(out.read_text())
    assert schema["title"] == "HackSky Edge device map"
    assert schema["$defs"]["ModbusDevice"]["properties"]["profile"]["anyOf"][0]["enum"] == profiles.names()
