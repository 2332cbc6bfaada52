"""``include:`` splices device lists and the map's own ``profiles:`` from other files; every error
still names the file, line and column where it is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.configload import ConfigError, load_config


def write(directory: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)
    return directory / next(iter(files))


PLANT = {
    "plant.yaml": """gateway: {id: gw}
include: [halls/hall-b.yaml, meters.yaml]
devices:
  - {id: a, host: 10.0.0.1, profile: acme-em3}
""",
    "halls/hall-b.yaml": """devices:
  - {id: b, host: 10.0.0.2, profile: acme-em3, points: [{name: p, limits: {max: 90}}]}
  - {id: c, transport: serial, port: /dev/ttyUSB0, unit_id: 7, profile: abb-b23}
""",
    "meters.yaml": """profiles:
  acme-em3:
    manufacturer: Acme
    device: {word_order: little}
    points:
      - {name: v, address: 0, type: float32, unit: V, role: voltage}
      - {name: p, address: 2, type: float32, unit: kW, role: power}
""",
}


def test_devices_and_profiles_from_included_files_join_the_map(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, PLANT))
    assert [d.id for d in cfg.devices] == ["a", "b", "c"]
    a, b, c = cfg.devices
    assert [p.name for p in a.points] == ["v", "p"] and a.word_order == "little"
    limits = next(p for p in b.points if p.name == "p").limits
    assert limits is not None and limits.max == 90
    assert c.address == "serial:/dev/ttyUSB0/7" and len(c.points) > 10
    assert set(cfg.profiles) == {"acme-em3"}


def test_an_error_in_an_included_file_names_that_file_and_its_own_index(tmp_path: Path) -> None:
    files = dict(PLANT)
    files["halls/hall-b.yaml"] = files["halls/hall-b.yaml"].replace("10.0.0.2", "10.0.0.2, port: 99999")
    files["meters.yaml"] = files["meters.yaml"].replace("address: 2,", "address: 1,")
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, files))
    hall, meters = tmp_path / "halls" / "hall-b.yaml", tmp_path / "meters.yaml"
    # the profile's mistake is reported at the profile once for the devices that take its point as it
    # is, and at the device's own entry for the device that overrides that point
    assert [str(i) for i in err.value.issues] == [
        f"{hall}:2:35: devices[0].port: 99999 is not a TCP port number (1-65535; a serial device needs "
        "transport: serial)",
        f"{hall}:2:70: devices[0].points[0].address: overlaps v (holding 0..1)",
        f"{meters}:7:28: profiles.acme-em3.points[1].address: overlaps v (holding 0..1)",
    ]


@pytest.mark.parametrize(("change", "message"), [
    ({"meters.yaml": "profiles: {}\ndevices: []\ngateway: {id: x}\n"},
     "meters.yaml:3:1: gateway: unknown key in an included file (it may hold devices, profiles, include)"),
    ({"meters.yaml": "include: [plant.yaml]\n"},
     "meters.yaml:1:11: include[0]: includes go round in a circle or too deep: plant.yaml -> meters.yaml -> "
     "plant.yaml"),
    ({"halls/hall-b.yaml": "include: [../plant.yaml]\n"},
     "includes go round in a circle or too deep: plant.yaml -> hall-b.yaml -> plant.yaml"),
    ({"plant.yaml": PLANT["plant.yaml"].replace("meters.yaml", "nowhere.yaml")},
     "plant.yaml:2:30: include[1]: cannot read"),
])
def test_a_wrong_include_is_refused_with_its_place(tmp_path: Path, change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {**PLANT, **change}))
    assert message in str(err.value), str(err.value)


def test_the_maps_hash_covers_its_included_files(tmp_path: Path) -> None:
    main = write(tmp_path, PLANT)
    before = load_config(main).map_hash()
    (tmp_path / "meters.yaml").write_text(PLANT["meters.yaml"].replace("Acme", "Acme Corp"))
    assert load_config(main).map_hash() != before


@pytest.mark.parametrize(("change", "message"), [
    ({"plant.yaml": PLANT["plant.yaml"].replace("[halls/hall-b.yaml, meters.yaml]", "meters.yaml")},
     "plant.yaml:2:10: include: a list of files, paths relative to this file: include: [hall-b.yaml]"),
    ({"plant.yaml": PLANT["plant.yaml"].replace("meters.yaml]", "\"a\\0b.yaml\"]")},
     "plant.yaml:2:30: include[1]: a file name (relative to this file)"),
    ({"halls/hall-b.yaml": "devices:\n  id: b\n  host: h\n"}, "hall-b.yaml:2:3: devices: a list of devices"),
    ({"meters.yaml": "profiles:\n  - acme-em3\n"}, "meters.yaml:2:3: profiles: a mapping of profiles by name"),
    ({"plant.yaml": PLANT["plant.yaml"].replace("profile: acme-em3}", "profile: acme-em3, points: {name: v}}")},
     "plant.yaml:4:56: devices[0].points: a list of points"),
    ({"plant.yaml": PLANT["plant.yaml"].replace("profile: acme-em3}",
                                                "profile: acme-em3, points: [{name: pp, unit: kW}]}")},
     "plant.yaml:4:64: devices[0].points[0].name: 'pp' is not a point of profile acme-em3 (did you mean 'p'?); "
     "a point of the device's own needs its address"),
])
def test_a_wrong_shape_is_named_where_it_is_written(tmp_path: Path, change: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, {**PLANT, **change}))
    assert message in str(err.value), str(err.value)


def test_a_tcp_port_from_the_environment_is_a_number(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METER_PORT", "5020")
    plant = PLANT["plant.yaml"].replace("host: 10.0.0.1,", "host: 10.0.0.1, port: \"${METER_PORT}\",")
    cfg = load_config(write(tmp_path, {**PLANT, "plant.yaml": plant}))
    assert cfg.devices[0].address == "10.0.0.1:5020/1"


def test_the_keys_a_point_may_have_are_the_models() -> None:
    from agent.mapdoc import POINT_KEYS
    from agent.settings import PointConfig

    assert set(PointConfig.model_fields) == POINT_KEYS
