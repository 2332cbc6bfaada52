"""Point names the device map accepts, unique whatever their case."""

from __future__ import annotations

import re

from agent.discover.render import point_name, unique_names
from agent.settings import NAME_PATTERN


def test_point_names_follow_the_maps_pattern() -> None:
    for text in ("Plant.Tank1.Level", "Tank 1/Level (m)", ".hidden", "-x", "", "Ünïcode", "a" * 100 + ".Level"):
        assert re.match(NAME_PATTERN, point_name(text)), text
    assert point_name("Tank 1/Level (m)") == "Tank_1_Level__m_"
    assert point_name("a" * 100 + ".Level").endswith(".Level"), "a long path keeps its leaf"


def test_names_are_made_unique_ignoring_case_within_the_length_limit() -> None:
    long = "x" * 64
    assert unique_names(["Level", "level", "Level", "Level_2", long, long]) == [
        "Level", "level_2", "Level_3", "Level_2_2", long, "x" * 62 + "_2"]
