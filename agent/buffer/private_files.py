"""The agent's own files: a directory only its user can enter, files never written through a link.

Anyone who can plant a symbolic link where the agent writes (``state.tmp`` -> ``/etc/...``)
would make the agent overwrite the target with its own rights; a buffer readable by others
shows the plant's data. Both are closed here.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from pathlib import Path

from drivers.base import write_new

log = logging.getLogger(__name__)


def private_directory(directory: Path) -> None:
    """Create ``directory`` mode 0700, or tighten one of ours that group or others may enter."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = directory.stat()
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(directory, stat.S_IMODE(st.st_mode) & 0o700)
        log.warning("buffer directory %s was open to group or others (mode %04o); now 0700",
                    directory, stat.S_IMODE(st.st_mode))


def refuse_links(*paths: Path) -> None:
    """Raise when one of ``paths`` is a symbolic link (the agent's files are never links)."""
    for path in paths:
        if path.is_symlink():
            raise OSError(errno.ELOOP, f"{path} is a symbolic link; the agent does not write through links: "
                                       "remove it", str(path))


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file ``path`` (mode 0600), replacing a file or link there, never following one."""
    path.unlink(missing_ok=True)  # a planted link goes, its target is untouched
    write_new(path, data, 0o600)
