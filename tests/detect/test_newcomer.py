"""What a newcomer training a model for their own plant meets: notes, errors and reports that say what to do."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from agent.cli import build_parser
from agent.configload import ConfigError
from agent.detect.evaluate import load_relations
from agent.detect.plant import PlantRelations
from agent.detect.scoring import score
from agent.settings import DetectionConfig

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "train-your-plant.md"
SIGNALS = ["tank_level", "pump_on", "pump_flow", "demand_flow", "outlet_pressure"]
RELATIONS = """\
# one tank, filled by one pump
plant:
  tanks:
    - level: tank_level
      pumps: [{status: pump_on, flow: pump_flow}]
      outflows: [demand_flow]
      pressures: [outlet_pressure]
"""


def _plant_csv(path: Path, rows: int, seed: int, labels: list[int] | None = None) -> Path:
    """Hourly rows of a tank whose pump keeps its level between 2.5 and 3.5 m (not BATADAL's columns)."""
    rng = np.random.default_rng(seed)
    level, on = 3.0, 0
    lines = [",".join(["DATETIME", *SIGNALS, *(["ATT_FLAG"] if labels is not None else [])])]
    for k in range(rows):
        on = 1 if level < 2.5 else 0 if level > 3.5 else on
        flow = 10 * on + rng.normal(0, 0.2)
        demand = 5 + 2 * np.sin(2 * np.pi * k / 24) + rng.normal(0, 0.2)
        level += 0.05 * (flow - demand)
        values = [level, on, flow, demand, 20 + 3 * level + rng.normal(0, 0.1)]
        lines.append(",".join([f"{1 + k // 24:02d}/01/15 {k % 24:02d}", *(f"{v:.4f}" for v in values),
                               *([str(labels[k])] if labels is not None else [])]))
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_train_without_relations_notes_the_detectors_left_out_and_how_to_declare_them(tmp_path: Path) -> None:
    data = _plant_csv(tmp_path / "plant.csv", 240, seed=1)
    bare = _cli("train", "--csv", data, "-o", tmp_path / "bare.npz")
    assert bare.returncode == 0, bare.stderr
    notes = [line for line in bare.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1, bare.stderr
    assert "no plant relations in effect" in notes[0]
    assert "mass-balance, pressure, control and actuator detectors are left out" in notes[0]
    assert "plant: section" in notes[0] and "--relations FILE" in notes[0]

    (tmp_path / "relations.yaml").write_text(RELATIONS)
    declared = _cli("train", "--csv", data, "--relations", tmp_path / "relations.yaml", "-o", tmp_path / "m.npz")
    assert declared.returncode == 0, declared.stderr
    assert "(2 from declared relations)" in declared.stdout and "note:" not in declared.stderr


def test_relations_with_nothing_learned_say_so(tmp_path: Path) -> None:
    (tmp_path / "empty.yaml").write_text("plant: {}\n")
    result = _cli("train", "--csv", _plant_csv(tmp_path / "plant.csv", 100, seed=1), "--relations",
                  tmp_path / "empty.yaml", "-o", tmp_path / "m.npz")
    assert result.returncode == 0, result.stderr
    assert f"note: the relations in {tmp_path / 'empty.yaml'} gave none of the mass-balance" in result.stderr


def test_a_wrong_relations_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "relations.yaml"
    path.write_text(RELATIONS.replace("{status: pump_on,", "{stat: pump_on,").replace("pressures:", "pressure:"))
    with pytest.raises(ConfigError) as caught:
        load_relations(path, SIGNALS)
    assert str(caught.value).splitlines() == [
        f"{path}:5:15: plant.tanks[0].pumps[0].status: required field is missing",
        f"{path}:5:16: plant.tanks[0].pumps[0].stat: unknown key (did you mean 'status'?)",
        f"{path}:7:7: plant.tanks[0].pressure: unknown key (did you mean 'pressures'?)",
    ]


@pytest.mark.parametrize(("text", "expected"), [
    ("plant:\n  tanks:\n    - level: tank_level\n      pumps: [{status: pump_on\n",
     r"relations\.yaml:5:1: YAML syntax: expected ',' or '}'"),
    ("- tank_level\n- pump_on\n", r"relations\.yaml:1:1: no plant: section; a relations file is a mapping"),
    ("tanks:\n  - level: tank_level\n", r"relations\.yaml:1:1: no plant: section"),
    ("plant:\n  - level: tank_level\n", r"relations\.yaml:2:3: plant: "),
    ("plant:\n  tanks: []\nplant:\n  tanks: []\n", r"relations\.yaml:3:1: plant: duplicate key 'plant'"),
])
def test_a_broken_relations_file_is_one_clear_line_per_problem_not_a_traceback(
        tmp_path: Path, text: str, expected: str) -> None:
    (tmp_path / "relations.yaml").write_text(text)
    data = _plant_csv(tmp_path / "plant.csv", 60, seed=1)
    test = _plant_csv(tmp_path / "test.csv", 60, seed=2, labels=[0] * 60)
    for command in (["train", "--csv", data, "-o", tmp_path / "m.npz"], ["evaluate", "--train", data, "--test", test]):
        result = _cli(*command, "--relations", tmp_path / "relations.yaml")
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert re.match(expected, result.stderr.replace(str(tmp_path) + os.sep, "")), result.stderr
        assert len(result.stderr.splitlines()) == 1


def test_scores_without_attack_rows_carry_no_attack_figures() -> None:
    quiet = score(np.array([1, 0, 0, 0]), np.array([0, 0, 0, 0]))
    assert quiet.attack_rows == 0 and quiet.false_alarms_per_1000 == 250.0
    d = quiet.as_dict()
    assert [d[k] for k in ("tpr", "precision", "f1", "s_ttd", "s_clf", "s")] == [None] * 6
    assert d["tnr"] == 0.75 and (d["fp"], d["tn"]) == (1, 3)
    attacked = score(np.array([1, 0, 0, 1]), np.array([0, 0, 1, 1])).as_dict()
    assert attacked["tpr"] == 0.5 and attacked["s"] is not None


def test_evaluate_on_a_file_without_attacks_reports_false_alarms_only(tmp_path: Path) -> None:
    train = _plant_csv(tmp_path / "january.csv", 240, seed=1)
    test = _plant_csv(tmp_path / "february.csv", 120, seed=2, labels=[0] * 120)
    (tmp_path / "relations.yaml").write_text(RELATIONS)
    common = ["evaluate", "--train", train, "--test", test, "--relations", tmp_path / "relations.yaml", "--single"]
    text = _cli(*common)
    assert text.returncode == 0, text.stderr
    assert "no attack rows in february.csv (ATT_FLAG is never 1): false alarms only, no TPR or S" in text.stdout
    tn, fp = map(int, re.search(r"\(FP (\d+), TN (\d+)\)", text.stdout).groups()[::-1])  # type: ignore[union-attr]
    assert tn + fp == 120
    assert f"false alarms per 1,000 rows {1000 * fp / 120:.1f}" in text.stdout
    assert not re.search(r"TPR \d|S \d|S_TTD|\| attack \|", text.stdout), text.stdout

    doc = json.loads(_cli(*common, "--json").stdout)
    assert doc["tpr"] is None and doc["s"] is None and doc["s_clf"] is None and doc["attacks"] == []
    assert doc["tnr"] == pytest.approx(tn / 120) and doc["fp"] == fp


def _guide_commands() -> list[list[str]]:
    """Every ``hacksky-edge`` command of the guide's shell blocks, continuation lines joined."""
    blocks = re.findall(r"```sh\n(.*?)```", GUIDE.read_text(), re.S)
    lines = "\n".join(blocks).replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("hacksky-edge ")]


def test_the_guide_uses_only_existing_flags_and_keys_and_is_linked_from_the_readme() -> None:
    commands = _guide_commands()
    assert {c[0] for c in commands} >= {"train", "evaluate", "check", "import-csv"}
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # an unknown flag or a missing value exits
    assert any("--from-db" in c and "--since" in c and "--until" in c for c in commands)
    assert any(c.count("--csv") > 1 for c in commands) and any("--budget" in c for c in commands)
    snippets = [yaml.safe_load(s) for s in re.findall(r"```yaml\n(.*?)```", GUIDE.read_text(), re.S)]
    plants = [PlantRelations.model_validate(s["plant"]) for s in snippets if "plant" in s]
    assert any(t.inflows or t.outflows for p in plants for t in p.tanks) and any(p.actuators for p in plants)
    detection = [DetectionConfig.model_validate(s["detection"]) for s in snippets if "detection" in s]
    assert len(detection) == 1 and detection[0].interval == 3600
    assert "(docs/train-your-plant.md)" in (ROOT / "README.md").read_text()
