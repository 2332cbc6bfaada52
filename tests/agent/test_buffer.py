"""The disk buffer: FIFO packs, ack-based forgetting, survival across reopen, size policy."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from agent.buffer.disk import FILE_NAME, DiskBuffer
from agent.records import Event
from drivers.base import Reading


def readings(n: int, start: int = 0, device: str = "d") -> list[Reading]:
    return [Reading(device, f"p{i % 7}", 1_000_000 + i, float(i)) for i in range(start, start + n)]


def test_packs_come_oldest_first_and_are_forgotten_only_when_acked(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 10**9)
    buf.put(readings(10), [Event("metric", {"name": "m", "value": 1})])
    pack = buf.get_pack(4)
    assert [r.value for r in pack.readings] == [0, 1, 2, 3]
    assert buf.get_pack(4).readings == pack.readings, "unacked pack is handed out again"
    buf.ack(pack)
    assert [r.value for r in buf.get_pack(100).readings] == [4, 5, 6, 7, 8, 9]
    assert buf.get_pack(100).events == [], "events were acked with the first pack"
    assert buf.reading_rows == 6 and buf.event_rows == 0
    buf.close()


def test_contents_and_state_survive_reopen(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 10**9)
    buf.put(readings(5), [], state={"open_alerts": {"k": {"event_key": "k/1"}}})
    buf.close()
    again = DiskBuffer(tmp_path, 10**9)
    assert again.reading_rows == 5
    assert again.load_state("open_alerts") == {"k": {"event_key": "k/1"}}
    assert [r.ts_us for r in again.get_pack(10).readings] == [r.ts_us for r in readings(5)]
    again.close()


def test_committed_readings_survive_kill_9(tmp_path: Path) -> None:
    script = (
        "import os, sys; sys.path.insert(0, sys.argv[2]);"
        "from pathlib import Path; from agent.buffer.disk import DiskBuffer; from drivers.base import Reading;"
        "b = DiskBuffer(Path(sys.argv[1]), 10**9);"
        "b.put([Reading('d', 'p', i, float(i)) for i in range(1000)]);"
        "os.kill(os.getpid(), 9)")
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path), str(root)])
    assert proc.returncode == -9
    buf = DiskBuffer(tmp_path, 10**9)
    assert buf.reading_rows == 1000
    buf.close()


def test_drop_oldest_keeps_the_newest_within_the_cap(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 256 * 1024, "drop_oldest")
    dropped = 0
    for batch in range(40):
        dropped += buf.put(readings(500, batch * 500)).dropped
    assert dropped > 0
    assert buf.used_bytes() <= 256 * 1024 * 1.1
    assert buf.counter("dropped_readings") == dropped
    assert buf.reading_rows + dropped == 20_000
    values = [r.value for r in buf.get_pack(100_000).readings]
    assert values[-1] == 19_999 and values == sorted(values)
    buf.close()


def test_drop_newest_keeps_the_oldest(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 256 * 1024, "drop_newest")
    dropped = sum(buf.put(readings(500, b * 500)).dropped for b in range(40))
    assert dropped > 0 and buf.reading_rows + dropped == 20_000
    assert buf.get_pack(1).readings[0].value == 0
    buf.close()


def test_a_buffer_of_the_row_format_is_converted_in_order_at_open(tmp_path: Path) -> None:
    """Buffers written by earlier versions (one SQLite row per reading) are delivered, in order."""
    DiskBuffer(tmp_path, 10**9).close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.executemany("INSERT INTO readings(device, point, ts_us, value, text, quality) VALUES (?,?,?,?,?,?)",
                   [("d", "p", i, float(i), None, "good") for i in range(25_000)]
                   + [("d", "s", 25_000, None, "text", "good"), ("d", "b", 25_001, None, None, "bad:timeout")])
    db.commit()
    db.close()
    buf = DiskBuffer(tmp_path, 10**9)
    assert buf.reading_rows == 25_002
    pack = buf.get_pack(30_000)
    assert [r.ts_us for r in pack.readings] == list(range(25_002))
    assert pack.readings[-2:] == [Reading("d", "s", 25_000, None, "text"), Reading("d", "b", 25_001, None, None,
                                                                                   "bad:timeout")]
    buf.ack(pack)
    assert buf.reading_rows == 0
    buf.close()


def test_a_pack_ending_inside_a_chunk_leaves_the_rest_for_the_next(tmp_path: Path) -> None:
    buf = DiskBuffer(tmp_path, 10**9)
    buf.put(readings(10))
    buf.put(readings(10, 10))
    assert len(buf.get_pack(15).readings) == 10, "a pack ends between chunks when it can"
    buf.ack(buf.get_pack(5))
    buf.ack(buf.get_pack(3))
    first = buf.get_pack(10)
    assert [r.value for r in first.readings] == list(range(8, 10)), "the rest of the first chunk"
    buf.ack(first)
    buf.close()
    again = DiskBuffer(tmp_path, 10**9)
    assert again.reading_rows == 10 and again.oldest_ts_us() == readings(1, 10)[0].ts_us
    assert [r.value for r in again.get_pack(100).readings] == list(range(10, 20))
    again.close()
