"""The inbox's folders and the moves between them; sweeping what a killed worker left.

    INBOX/<ep>.mp4 | INBOX/<series>/          arriving (watched)
    INBOX/.processing/<name>                  claimed (atomic rename: one daemon wins)
    INBOX/.done/<name>                        every unit exported
    INBOX/.failed/<name> + <name>.reason.json gave up after the last attempt

Sidecar scripts (``ep.zh.srt`` ...) travel with their video so the transcript stays the same.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.locks import pid_alive
from locpipe.stages.transcribe import SIDECAR_SUFFIXES

log = logging.getLogger(__name__)

#: temporaries written by the store and by atomic exports: ``.<name>.<pid>.tmp``
_PID_TMP = re.compile(r"^\..+\.(\d+)\.tmp$")


@dataclass(frozen=True)
class Inbox:
    root: Path

    @property
    def processing(self) -> Path:
        return self.root / ".processing"

    @property
    def done(self) -> Path:
        return self.root / ".done"

    @property
    def failed(self) -> Path:
        return self.root / ".failed"

    def create(self) -> None:
        for folder in (self.processing, self.done, self.failed):
            folder.mkdir(parents=True, exist_ok=True)


def claim(inbox: Inbox, name: str) -> Path | None:
    """Rename INBOX/<name> into .processing; None if another daemon (or a name clash) wins."""
    src, dst = inbox.root / name, inbox.processing / name
    if dst.exists():  # an earlier delivery of the same name is still being processed: later
        log.info("%s waits: a claim of the same name is still in .processing", name)
        return None
    try:
        os.rename(src, dst)
    except FileNotFoundError:
        log.info("%s was claimed by another daemon", name)
        return None
    except OSError as exc:
        log.warning("cannot claim %s: %s", name, exc)
        return None
    if dst.is_file():
        _move_sidecars(src, dst)
    return dst


def _move_sidecars(video: Path, dest: Path) -> None:
    for suffix in SIDECAR_SUFFIXES:
        side = video.with_name(video.stem + suffix)
        if side.is_file():
            try:
                os.rename(side, dest.with_name(dest.stem + suffix))
            except OSError as exc:
                log.warning("sidecar %s stays behind: %s", side, exc)


def free_path(path: Path) -> Path:
    """``path``, or ``stem.N.suffix`` if a same-named earlier delivery is already there."""
    if not path.exists():
        return path
    n = 1
    while (candidate := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    return candidate


def retire(inbox: Inbox, rel: str, dest_root: Path) -> Path:
    """Move .processing/<rel> (and its sidecars) to ``dest_root``/<rel>; returns where it went."""
    src = inbox.processing / rel
    dst = free_path(dest_root / rel)
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(src, dst)
    _move_sidecars(src, dst)
    return dst


def close_batch(inbox: Inbox, batch: str) -> None:
    """A series folder is finished: move what is left in it (notes, scripts) to .done/<batch>."""
    src = inbox.processing / batch
    if not src.exists():
        return
    for item in sorted(src.rglob("*"), reverse=True):
        if item.is_file():
            dst = free_path(inbox.done / batch / item.relative_to(src))
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(item, dst)
        elif item.is_dir():
            _rmdir_quiet(item)
    _rmdir_quiet(src)


def _rmdir_quiet(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass


def tail(path: Path, lines: int = 40) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def sweep_temporaries(*roots: Path) -> int:
    """Remove ``.<name>.<pid>.tmp`` files and folders whose writer is dead on this host.

    A killed worker leaves them beside exports (OUT_DIR/<market>/) and in the stage cache;
    a live writer's temporaries are left alone (another daemon may be exporting right now).
    """
    removed = 0
    for root in roots:
        if not root.exists():
            continue
        for path in _tmp_candidates(root):
            match = _PID_TMP.match(path.name)
            if not match or pid_alive(int(match.group(1))):
                continue
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            log.info("removed %s (left by a stopped worker)", path)
            removed += 1
    return removed


def _tmp_candidates(root: Path):
    """Where temporaries live: OUT_DIR, OUT_DIR/<market>/, and the cache's <scope>/<stage>/."""
    yield from root.glob(".*.tmp")
    yield from root.glob("*/.*.tmp")
    yield from root.glob("episodes/*/*/.*.tmp")
