"""The one file-lock helper: ``flock`` on a lock file or on a folder itself.

Used wherever several processes (``--jobs`` workers, ``--shard`` array tasks, watch
daemons, farm workers on a shared path) update one file: the series' speaker store and
voice casting, the unit locks of the farm, ``manifest.json``. ``flock`` locks die with
their process (or, over NFS, with the lock manager's lease), so a killed writer never
leaves a lock behind.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class Busy(Exception):
    """A non-blocking lock is held by another live process."""


@contextmanager
def file_lock(path: Path, *, blocking: bool = True, owner: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path`` for the ``with`` block.

    ``path`` is a lock file (created if missing) or an existing folder (locked itself, so no
    lock file is left among its files). ``blocking=False`` raises ``Busy`` instead of
    waiting; ``owner`` is written into a lock file, for people looking at a stuck lock.
    """
    folder = path.is_dir()
    if not folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDONLY) if folder else os.open(path, os.O_RDWR | os.O_CREAT, 0o664)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(str(path)) from None
        if owner and not folder:
            os.ftruncate(fd, 0)
            os.write(fd, owner.encode())
        yield
    finally:
        os.close(fd)  # closing releases the lock


def beside(path: Path) -> Path:
    """The lock file that guards ``path``: ``<path>.lock`` next to it."""
    return path.with_name(path.name + ".lock")


def pid_alive(pid: int | None) -> bool:
    """True if ``pid`` runs on this host and is not a zombie (a killed, unreaped process is dead).

    Used to tell a live writer's temporary files and claims from a dead one's.
    """
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
