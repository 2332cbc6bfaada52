"""What a deployment installs: the wheel (with builtin:ctown's data, without the benchmarks) and the lock."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from agent.detect.builtin import CTOWN_DATA, CTOWN_RELATIONS_FILE, CTOWN_TRAINING_FILE

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGED = ["agent/detect/data/BATADAL_dataset03.csv.gz", "agent/detect/data/ctown.yaml",
            "agent/detect/data/README.md"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The wheel, built without isolation (about 2 s) from a copy, so the work tree gets no build/."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in ("agent", "drivers", "simulators", "bench"):  # bench too: it must be left out
        shutil.copytree(ROOT / name, src / name, ignore=ignore)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp / "dist"), str(src)], capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    (path,) = (tmp / "dist").glob("hacksky_edge-*.whl")
    yield path


def test_wheel_carries_ctown_data_and_its_licence_but_no_benchmarks(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert set(PACKAGED) <= set(names)
    assert {"agent/py.typed", "agent/central/migrations/script.py.mako",
            "agent/central/migrations/versions/0001_initial.py",
            "drivers/py.typed", "simulators/py.typed"} <= set(names)
    shipped = {f"agent/profiles/{f.name}" for f in (ROOT / "agent" / "profiles").glob("*.yaml")}
    assert len(shipped) >= 10 and shipped <= set(names), "every meter profile is in the wheel"
    top = {n.split("/")[0] for n in names if not n.startswith("hacksky_edge-")}
    assert top == {"agent", "drivers", "simulators"}, "bench (and anything else) stays out of the wheel"
    readme = zipfile.ZipFile(wheel).read("agent/detect/data/README.md").decode()
    assert "CC BY 4.0" in readme and "Taormina" in readme


def test_builtin_ctown_trains_from_the_installed_package(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    script = ("import agent, agent.detect.builtin as b\n"
              f"assert agent.__file__.startswith({str(site)!r}), agent.__file__\n"
              "m = b.builtin_model(b.CTOWN, 3600.0)\n"
              "print(len(b.builtin_signals(b.CTOWN)), len(m.signals), m.meta['relations'])\n")
    # cwd and PYTHONPATH: the extracted wheel comes before the work tree's editable install
    run = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert run.returncode == 0, run.stderr
    signals, model_signals, relations = run.stdout.split()
    assert signals == model_signals == "43"
    assert relations == str(site / "agent" / "detect" / "data" / "ctown.yaml"), "trained with C-Town's relations"


def test_packaged_ctown_data_is_the_repository_data() -> None:
    with (CTOWN_DATA / CTOWN_TRAINING_FILE).open("rb") as f:
        assert gzip.decompress(f.read()) == (ROOT / "data" / "batadal" / "BATADAL_dataset03.csv").read_bytes()
    assert (CTOWN_DATA / CTOWN_RELATIONS_FILE).read_bytes() == (ROOT / "data" / "batadal" / "ctown.yaml").read_bytes()


def _lock_pins() -> dict[str, list[tuple[Version, list[str]]]]:
    """Name -> [(version, hashes)] of requirements.lock (a name pinned per Python version has several)."""
    pins: dict[str, list[tuple[Version, list[str]]]] = {}
    text = (ROOT / "requirements.lock").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        requirement, *options = line.split("--hash=")
        name, version = requirement.split(";")[0].strip().split("==")
        pins.setdefault(str(canonicalize_name(name)), []).append((Version(version), [o.strip() for o in options]))
    return pins


def test_lock_pins_every_dependency_within_its_range_with_hashes() -> None:
    pins = _lock_pins()
    for dep in map(Requirement, PYPROJECT["project"]["dependencies"]):
        name = str(canonicalize_name(dep.name))
        assert name in pins, f"{name} is not in requirements.lock: run deploy/lock"
        for version, _ in pins[name]:
            assert dep.specifier.contains(version, prereleases=True), f"{name}=={version} outside {dep.specifier}"
    assert all(hashes and all(h.startswith("sha256:") for h in hashes) for ps in pins.values() for _, hashes in ps)
    assert "deploy/lock" in (ROOT / "requirements.lock").read_text().splitlines()[1]


def test_dependency_floors_exclude_the_known_vulnerable_releases() -> None:
    deps = {str(canonicalize_name(r.name)): r.specifier for r in map(Requirement, PYPROJECT["project"]["dependencies"])}
    assert not deps["pymysql"].contains("1.1.0") and deps["pymysql"].contains("1.1.1")
    assert not deps["h11"].contains("0.14.0") and deps["h11"].contains("0.16.0")
