"""The device map's JSON Schema (``hacksky-edge schema``), for completion and validation in editors.

Generated from the same models the loader validates with, plus what the loader does before them:
``${VAR}`` and ``${VAR:-default}`` may stand for any number or boolean, durations and sizes are
numbers or strings with a unit, and ``profile`` offers the shipped meter profiles.
"""

from __future__ import annotations

from typing import Any

from agent import profiles
from agent.settings import PROFILE_NAME_PATTERN, AgentConfig

SCHEMA_ID = "https://hacksky.dev/schemas/hacksky-edge-device-map.json"
#: a value the loader takes from the environment
ENV_REFERENCE = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$",
                 "description": "${VAR} or ${VAR:-default}: taken from the environment at load"}
_META = ("title", "description", "default")


def _allow_env(node: Any) -> Any:
    """Every number, integer or boolean also accepts an environment reference."""
    if isinstance(node, list):
        return [_allow_env(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _allow_env(value) for key, value in node.items()}
    if node.get("type") in ("number", "integer", "boolean"):
        meta = {key: node.pop(key) for key in _META if key in node}
        return {**meta, "anyOf": [node, ENV_REFERENCE]}
    return node


def device_map_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a device map."""
    schema = _allow_env(AgentConfig.model_json_schema(by_alias=True))
    defs = schema["$defs"]
    modbus_device = defs["ModbusDevice"]
    # a device with a profile has its points from the profile (the loader checks that there are points),
    # and its own points may name a profile's point to override, without an address
    modbus_device["required"] = [key for key in modbus_device.get("required", []) if key != "points"]
    defs["PointConfig"]["required"] = [key for key in defs["PointConfig"].get("required", []) if key != "address"]
    addressed = {"properties": {"points": {"items": {"required": ["name", "address"]}}}}
    modbus_device["if"] = {"required": ["profile"], "properties": {"profile": {"type": "string"}}}
    modbus_device["else"] = addressed
    defs["MeterProfile"].update(addressed)
    modbus = modbus_device["properties"]
    modbus["profile"] = {"title": "Profile", "default": None,
                         "description": "a meter profile: its points and register layout (a shipped one, "
                                        "hacksky-edge profiles, or one of the map's own profiles:)",
                         "anyOf": [{"enum": profiles.names()}, {"type": "string", "pattern": PROFILE_NAME_PATTERN},
                                   {"type": "null"}]}
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": SCHEMA_ID,
            **schema, "title": "HackSky Edge device map"}
