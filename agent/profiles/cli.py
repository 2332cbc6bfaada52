"""``hacksky-edge profiles``: the shipped meter profiles, and one profile's points."""

from __future__ import annotations

import argparse
import sys

from agent import profiles


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows) + "\n"


def cmd_profiles(args: argparse.Namespace) -> int:
    """List the profiles, or show one."""
    if args.name is None:
        rows = [["NAME", "MANUFACTURER", "POINTS", "MODEL"]]
        for name in profiles.names():
            p = profiles.load(name)
            rows.append([name, p.manufacturer, str(len(p.points)), p.model[:70]])
        sys.stdout.write(_table(rows) + "\nhacksky-edge profiles show NAME: its points and source document\n")
        return 0
    try:
        p = profiles.load(args.name)
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]}\n")
        return 2
    layout = p.device.model_dump(exclude_none=True)
    lines = [f"{p.name}: {p.manufacturer} {p.model}", f"document: {p.document}"]
    lines += [f"url: {p.url}"] if p.url else []
    lines += [f"layout: {', '.join(f'{k} {v}' for k, v in layout.items())}", ""]
    sys.stdout.write("\n".join(lines) + "\n")
    rows = [["POINT", "TABLE", "ADDRESS", "TYPE", "SCALE", "UNIT", "ROLE"]]
    for pt in p.points:
        scale = f"{pt.scale:g}" + (f" x10^{pt.scale_factor}" if pt.scale_factor else "")
        rows.append([pt.name, pt.table, str(pt.address), pt.type + (f"[{pt.length}]" if pt.length else ""),
                     scale, pt.unit or "", pt.role or ""])
    sys.stdout.write(_table(rows))
    if p.notes:
        sys.stdout.write(f"\nnotes: {p.notes}\n")
    example = f"{{id: meter-01, host: 192.0.2.10, unit_id: 1, profile: {p.name}}}"
    sys.stdout.write(f"\nuse it in a device map:\n  - {example}\n")
    return 0


def add_profile_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """``profiles`` and ``profiles show NAME``."""
    p = sub.add_parser("profiles", help="list the shipped meter profiles (profile: NAME on a Modbus device)",
                       description="Register maps of widely installed meters, each from its manufacturer's document.")
    actions = p.add_subparsers(dest="profiles_command")
    show = actions.add_parser("show", help="a profile's points, layout and source document")
    show.add_argument("name")
    p.set_defaults(func=cmd_profiles, name=None)
