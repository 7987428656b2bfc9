"""Watch-folder daemon: ``locpipe watch INBOX`` and ``locpipe status``.

A studio drops episode files or whole series folders into INBOX; the daemon waits until
each has stopped changing (``watcher``), claims it by an atomic rename into
``INBOX/.processing/`` and records the claim in a SQLite journal (``journal``), runs the
ordinary pipeline for it in a child process (``worker``), and moves it to ``.done/`` or,
after three failed attempts, to ``.failed/`` with a ``reason.json`` (``service``).

Why this shape: the rename decides ownership even between daemons that do not share a
journal; the journal makes a restart (or a second daemon) able to tell a finished claim from
an interrupted one; the child process keeps a crash, an OOM kill or a hung ffmpeg from taking
the daemon with it; and the stage cache plus atomic exports make re-running an interrupted
episode cheap and idempotent (exactly one complete export per episode and market).
"""

from locpipe.daemon.service import Daemon, WatchSettings

__all__ = ["Daemon", "WatchSettings"]
