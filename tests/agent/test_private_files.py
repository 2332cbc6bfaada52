"""The buffer directory is the agent's alone, and nothing it writes there follows a planted link."""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.buffer.disk import FILE_NAME, DiskBuffer
from agent.pipeline.statefile import read_state, write_state


@pytest.fixture(autouse=True)
def loose_umask() -> Iterator[None]:
    """The common default 022, pinned: what the agent creates must not depend on the caller's umask."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_buffer_directory_is_created_private_and_an_open_one_is_tightened(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fresh = tmp_path / "new" / "buf"
    DiskBuffer(fresh, 10**7).close()
    assert mode(fresh) == 0o700
    opened = tmp_path / "opened"
    opened.mkdir(mode=0o755)
    with caplog.at_level(logging.WARNING, logger="agent.buffer.private_files"):
        DiskBuffer(opened, 10**7).close()
    assert mode(opened) == 0o700
    assert f"buffer directory {opened} was open to group or others (mode 0755); now 0700" in caplog.text


def test_state_file_is_written_around_planted_links_never_through_them(tmp_path: Path) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    buf = tmp_path / "buf"
    buf.mkdir(mode=0o700)
    (buf / "state.tmp").symlink_to(victim)
    (buf / "state.json").symlink_to(victim)
    write_state(buf, {"gateway": "gw", "central": {"url": "mysql+pymysql://edge:pw@db/x"}})
    assert victim.read_text() == "precious\n"
    assert not (buf / "state.json").is_symlink() and mode(buf / "state.json") == 0o600
    state = read_state(buf)
    assert state is not None and state["gateway"] == "gw" and "pw" not in json.dumps(state)


def test_a_buffer_file_that_is_a_link_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim.db"
    victim.write_bytes(b"not yours")
    buf = tmp_path / "buf"
    buf.mkdir(mode=0o700)
    (buf / f"{FILE_NAME}-wal").symlink_to(victim)
    with pytest.raises(OSError, match=r"-wal is a symbolic link; the agent does not write through links"):
        DiskBuffer(buf, 10**7)
    assert victim.read_bytes() == b"not yours"
