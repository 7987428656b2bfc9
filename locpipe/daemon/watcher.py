"""When has a file arrived? Size and mtime unchanged for ``settle`` seconds, as observed.

Copy tools, browsers and FTP servers write in place, so "the name exists" says nothing. A
candidate is a top-level entry of INBOX: a video file, or a folder (a series) holding videos.
Its signature is (size, mtime) - for a folder, every file below it - and it has arrived when
the signature has stayed the same for ``settle`` seconds of polling. Temporary names
(``*.part``, ``*.tmp``, ``*.crdownload``, dotfiles, ``~``) are never candidates, and a folder
holding an in-progress name is not ready yet.

Filesystem events (``watchdog``) only make the next poll come sooner: network shares deliver
none, and an event never replaces the settle check. Without watchdog the daemon just polls.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.batch import TEMPORARY, VIDEO_EXTENSIONS

log = logging.getLogger(__name__)

#: names a copy still in progress has inside a series folder (a stray dotfile does not block it)
IN_PROGRESS = re.compile(r"(\.part|\.tmp|\.crdownload)$", re.I)


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_EXTENSIONS and not TEMPORARY.search(path.name)


def signature(entry: Path) -> tuple | None:
    """What must stay unchanged: (size, mtime) of a file or of every file under a folder.

    None when the entry is not (or not yet) a candidate: vanished, a folder without videos,
    or a folder still holding an in-progress name.
    """
    try:
        if entry.is_file():
            st = entry.stat()
            return (st.st_size, st.st_mtime_ns)
        if not entry.is_dir():
            return None
        files = sorted(p for p in entry.rglob("*") if p.is_file())
        if any(IN_PROGRESS.search(p.name) for p in files):
            return None
        if not any(is_video(p) for p in entry.iterdir()):
            return None
        return tuple((str(p.relative_to(entry)), p.stat().st_size, p.stat().st_mtime_ns) for p in files)
    except OSError:  # it moved while we looked: another daemon claimed it, or the producer renamed it
        return None


def is_candidate_name(name: str) -> bool:
    return not name.startswith(".") and not TEMPORARY.search(name)


@dataclass
class _Seen:
    signature: tuple
    since: float


class Settler:
    """Remembers each candidate's signature between polls; ``scan`` returns the arrived ones."""

    def __init__(self, inbox: Path, settle: float, clock: Callable[[], float] = time.monotonic):
        self.inbox = inbox
        self.settle = settle
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def scan(self) -> tuple[list[str], int]:
        """(names that have settled, in name order; how many candidates are still settling)."""
        now = self.clock()
        current: dict[str, _Seen] = {}
        for entry in sorted(self.inbox.iterdir(), key=lambda p: p.name):
            if not is_candidate_name(entry.name) or (entry.is_file() and not is_video(entry)):
                continue
            sig = signature(entry)
            if sig is None:
                continue
            before = self._seen.get(entry.name)
            current[entry.name] = before if before and before.signature == sig else _Seen(sig, now)
        self._seen = current
        ready = [name for name, seen in current.items() if now - seen.since >= self.settle]
        return ready, len(current) - len(ready)

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def wait_hint(self) -> float | None:
        """Seconds until the earliest settling candidate could be ready (None if none is settling)."""
        if not self._seen:
            return None
        now = self.clock()
        return max(0.0, min(seen.since + self.settle - now for seen in self._seen.values()))


def start_event_hint(inbox: Path, wake: threading.Event):
    """Set ``wake`` on filesystem events in INBOX (not its dot-folders); None if watchdog cannot run."""
    try:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer
    except ImportError:
        log.info("watchdog is not installed: polling only")
        return None

    class _Wake(FileSystemEventHandler):
        def on_any_event(self, event) -> None:
            try:
                rel = Path(str(event.src_path)).relative_to(inbox)
            except ValueError:
                return
            if rel.parts and is_candidate_name(rel.parts[0]):  # our own .processing moves and journal: no
                wake.set()

    try:
        observer = Observer()
        observer.daemon = True
        observer.schedule(_Wake(), str(inbox), recursive=True)
        observer.start()
    except Exception as exc:  # inotify limits, unsupported filesystem: polling still works
        log.warning("filesystem events unavailable (%s): polling only", exc)
        return None
    return observer
