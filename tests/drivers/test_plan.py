"""Request planning: fewest requests within protocol limits, per table, across small gaps."""

from __future__ import annotations

from agent.settings import PointConfig
from drivers.modbus.plan import plan_requests, split_request


def pt(name: str, address: int, type_: str = "uint16", table: str = "holding", **kw: object) -> PointConfig:
    if table in ("coil", "discrete"):
        type_ = "bool"
    return PointConfig(name=name, address=address, type=type_, table=table, **kw)  # type: ignore[arg-type]


def spans(points: list[PointConfig], max_gap: int = 8) -> list[tuple[str, int, int, list[str]]]:
    return [(r.table, r.address, r.count, [p.name for p in r.points]) for r in plan_requests(points, max_gap)]


def test_neighbours_merge_across_small_gaps_only() -> None:
    points = [pt("a", 0, "float32"), pt("b", 4), pt("c", 20, "uint64"), pt("d", 2, "int16")]
    assert spans(points, max_gap=8) == [("holding", 0, 5, ["a", "d", "b"]), ("holding", 20, 4, ["c"])]
    assert spans(points, max_gap=15) == [("holding", 0, 24, ["a", "d", "b", "c"])]
    assert spans(points, max_gap=0) == [("holding", 0, 3, ["a", "d"]), ("holding", 4, 1, ["b"]),
                                        ("holding", 20, 4, ["c"])]


def test_tables_never_mix_and_limits_hold() -> None:
    regs = [pt(f"r{i}", i * 2, "float32") for i in range(100)]  # 200 registers back to back
    bits = [pt(f"c{i}", i, table="coil") for i in range(2500)]
    plan = plan_requests([*regs, *bits, pt("i", 0, table="input")], max_gap=8)
    assert {r.table for r in plan} == {"holding", "coil", "input"}
    assert max(r.count for r in plan if r.table == "holding") <= 125
    assert max(r.count for r in plan if r.table == "coil") <= 2000
    assert [r.count for r in plan if r.table == "coil"] == [2000, 500]
    assert sum(len(r.points) for r in plan) == 100 + 2500 + 1
    assert {r.function_code for r in plan} == {1, 3, 4}


def test_bits_of_one_register_share_a_request_and_split_goes_per_point() -> None:
    points = [pt("word", 20), pt("b0", 20, "bool", bit=0), pt("b3", 20, "bool", bit=3), pt("x", 22, "float32")]
    (request,) = plan_requests(points, max_gap=8)
    assert (request.address, request.count) == (20, 4)
    assert [(r.address, r.count) for r in split_request(request)] == [(20, 1), (20, 1), (20, 1), (22, 2)]
