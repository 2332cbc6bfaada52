"""/api/series: raw, 1m or 1h by range and step, always what the raw rows say (late data, the open hour)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, text

from agent.api.series import SeriesQuery, as_columns, resolution, series
from agent.buffer.disk import Pack
from agent.central.maintain import maintain
from agent.central.writer import to_datetime
from drivers.base import Reading
from tests.agent.rollup_truth import KEEP_ALL, T0, expected, plant_readings, writer_for

EPOCH = datetime(1970, 1, 1)


def as_expected(points: list[dict[str, Any]]) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    """An answer's buckets in the form :func:`expected` gives (device m1, point power)."""
    return {("m1", "power", round((datetime.fromisoformat(p["bucket"][:-1]) - EPOCH) / timedelta(microseconds=1))):
            (p["count"], p["good_count"], p["min"], p["max"], round(p["sum"], 6) if p["sum"] is not None else None,
             p["first"], p["last"]) for p in points}


def only(truth: dict[tuple[str, str, int], tuple[Any, ...]], since_us: int, until_us: int
         ) -> dict[tuple[str, str, int], tuple[Any, ...]]:
    return {k: v for k, v in truth.items() if k[:2] == ("m1", "power") and since_us <= k[2] < until_us}


def test_series_reads_rollups_and_computes_hours_not_built_yet_from_raw(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    built = plant_readings(T0, 3 * 3600)
    writer.write(Pack(readings=built))
    maintain(migrated_engine, KEEP_ALL)
    with migrated_engine.begin() as conn:  # built and no writer renews the marks: the rollups alone answer
        conn.execute(text("DELETE FROM rollup_pending"))
    late = plant_readings(T0 + 3_600_000_000 + 1_500_000, 1800, every_s=11)  # into hour 2, after maintain
    writer_for(migrated_engine).write(Pack(readings=late))
    truth = built + late
    pk = writer.sync_devices([])["m1"]
    since, until = to_datetime(T0), to_datetime(T0 + 3 * 3_600_000_000)

    def ask(step: float | None, start: datetime = since, end: datetime = until) -> dict[str, Any]:
        with migrated_engine.connect() as conn:
            return series(conn, migrated_engine, SeriesQuery(pk, "power", start, end, step))

    minutes = ask(60)
    assert minutes["resolution"] == "1m"
    assert as_expected(minutes["points"]) == only(expected(truth, 60_000_000), T0, T0 + 3 * 3_600_000_000)
    hours = ask(3600)
    assert hours["resolution"] == "1h"
    assert as_expected(hours["points"]) == only(expected(truth, 3_600_000_000), T0, T0 + 3 * 3_600_000_000)
    assert [p["mean"] for p in hours["points"]] == [p["sum"] / p["good_count"] for p in hours["points"]]
    # a step longer than an hour merges the hours: the three (20:00 to 23:00 UTC) in one day
    (merged,) = ask(86400)["points"]
    whole = [r for r in truth if r.device == "m1" and r.point == "power"]
    good = sorted((r for r in whole if r.quality == "good"), key=lambda r: r.ts_us)
    assert (merged["count"], merged["good_count"], merged["first"], merged["last"]) == (
        len(whole), len(good), good[0].value, good[-1].value)
    assert merged["min"] == min(r.value for r in good) and merged["max"] == max(r.value for r in good)
    # a range starting mid-hour: its buckets only, the rest of that hour left out
    mid = ask(60, since + timedelta(minutes=90))
    assert as_expected(mid["points"]) == only(expected(truth, 60_000_000), T0 + 5_400_000_000, T0 + 3 * 3_600_000_000)
    with pytest.raises(ValueError, match="not a whole number of the 1m buckets"):
        ask(90)
    # raw: every reading of the range, in time order, quality as stored
    raw = ask(None, since + timedelta(minutes=30), since + timedelta(minutes=40))
    assert raw["resolution"] == "raw" and not raw["truncated"]
    in_range = sorted((r for r in whole if T0 + 1_800_000_000 <= r.ts_us < T0 + 2_400_000_000), key=lambda r: r.ts_us)
    assert [(p["value"], p["quality"]) for p in raw["points"]] == [(r.value, r.quality) for r in in_range]


def test_resolution_by_step_else_by_range() -> None:
    t = datetime(2026, 5, 28)
    assert [resolution(t, t + span, None) for span in (timedelta(hours=6), timedelta(hours=7), timedelta(days=14),
                                                       timedelta(days=15))] == ["raw", "1m", "1m", "1h"]
    assert [resolution(t, t + timedelta(days=30), step) for step in (1.0, 60.0, 3599.0, 3600.0, 86400.0)] == [
        "raw", "1m", "1m", "1h", "1h"]


def test_a_reading_of_another_device_or_point_never_leaks_in(migrated_engine: Engine) -> None:
    writer = writer_for(migrated_engine)
    writer.write(Pack(readings=[Reading("m1", "power", T0, 1.0), Reading("m2", "power", T0, 50.0),
                                Reading("m1", "voltage", T0, 230.0)]))
    pk = writer.sync_devices([])["m1"]
    with migrated_engine.connect() as conn:
        answer = series(conn, migrated_engine, SeriesQuery(pk, "power", to_datetime(T0),
                                                           to_datetime(T0 + 86_400_000_000), 3600))
    assert [(p["count"], p["min"], p["max"]) for p in answer["points"]] == [(1, 1.0, 1.0)]


def test_raw_and_bucket_answers_are_the_same_text_on_every_backend(migrated_engine: Engine) -> None:
    """MariaDB builds the points as JSON itself: times written as Python writes them (microseconds
    only when there are), doubles exact, texts and qualities as stored."""
    writer = writer_for(migrated_engine)
    readings = [Reading("m1", "power", T0, 0.1 + 0.2), Reading("m1", "power", T0 + 1_500_000, 1e-300),
                Reading("m1", "power", T0 + 2_000_007, None, 'Störung "x"', "bad:timeout"),
                Reading("m1", "power", T0 + 61_000_000, 123456789.123456789)]
    writer.write(Pack(readings=readings))
    pk = writer.sync_devices([])["m1"]
    with migrated_engine.connect() as conn:
        raw = series(conn, migrated_engine, SeriesQuery(pk, "power", to_datetime(T0), to_datetime(T0 + 3_600_000_000),
                                                        None))
        minutes = series(conn, migrated_engine, SeriesQuery(pk, "power", to_datetime(T0),
                                                            to_datetime(T0 + 3_600_000_000), 60))
    start = to_datetime(T0).isoformat()
    assert raw["points"] == [
        {"ts": start + "Z", "value": 0.1 + 0.2, "text": None, "quality": "good"},
        {"ts": to_datetime(T0 + 1_500_000).isoformat() + "Z", "value": 1e-300, "text": None, "quality": "good"},
        {"ts": to_datetime(T0 + 2_000_007).isoformat() + "Z", "value": None, "text": 'Störung "x"',
         "quality": "bad:timeout"},
        {"ts": to_datetime(T0 + 61_000_000).isoformat() + "Z", "value": 123456789.123456789, "text": None,
         "quality": "good"}]
    first, second = minutes["points"]
    assert first == {"bucket": start + "Z", "count": 3, "good_count": 2, "min": 1e-300, "max": 0.1 + 0.2,
                     "sum": 0.1 + 0.2 + 1e-300, "first": 0.1 + 0.2, "last": 1e-300, "mean": (0.1 + 0.2 + 1e-300) / 2}
    assert second["bucket"] == to_datetime(T0 + 60_000_000).isoformat() + "Z" and second["count"] == 1
    # as columns (the dashboard's format): the same figures, times in epoch seconds, exact to the µs
    with migrated_engine.connect() as conn:
        raw_columns = series(conn, migrated_engine, SeriesQuery(
            pk, "power", to_datetime(T0), to_datetime(T0 + 3_600_000_000), None), columns=True)
        minute_columns = series(conn, migrated_engine, SeriesQuery(
            pk, "power", to_datetime(T0), to_datetime(T0 + 3_600_000_000), 60), columns=True)
    assert raw_columns == as_columns(raw) and "points" not in raw_columns
    assert [round(t * 1e6) for t in raw_columns["t"]] == [T0, T0 + 1_500_000, T0 + 2_000_007, T0 + 61_000_000]
    assert raw_columns["value"] == [0.1 + 0.2, 1e-300, None, 123456789.123456789]
    assert raw_columns["text"] == [None, None, 'Störung "x"', None]
    assert raw_columns["not_good"] == [[2, "bad:timeout"]]
    assert minute_columns == as_columns(minutes)
    assert minute_columns["t"] == [T0 / 1e6, T0 / 1e6 + 60] and minute_columns["good_count"] == [2, 1]
