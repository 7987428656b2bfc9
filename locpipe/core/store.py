"""Content-keyed artifact store: every stage output lives under a key of its inputs.

A stage's key is the hash of (stage name, stage code version, the keys of the artifacts it
reads, the slice of config it depends on, backend name and version). Same key, same
output: a rerun loads it instead of working. Change a market's subtitle style and only the
render key changes; transcription is reused.

Writes are atomic at the directory level: a stage writes into a temporary sibling directory
and it is renamed into place only after ``artifact.json`` is complete, so a crash leaves
either a finished artifact or nothing (temporary directories are swept on the next run).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from pydantic import BaseModel

from locpipe.core.locks import pid_alive

log = logging.getLogger(__name__)

A = TypeVar("A", bound=BaseModel)

META = "artifact.json"


def make_key(stage: str, parts: dict) -> str:
    """Stable key from a stage name and JSON-able parts (dict order does not matter)."""
    payload = json.dumps({"stage": stage, **parts}, sort_keys=True, default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass
class StageRecord:
    """What happened to one stage of one unit: for the manifest and the progress display."""

    stage: str
    key: str
    cached: bool
    seconds: float


@dataclass(frozen=True)
class Stored(Generic[A]):
    """A stage's artifact: the model, the directory its files live in, and its key.

    The key is what later stages put in their own key parts, so a change upstream
    invalidates exactly what depends on it.
    """

    model: A
    dir: Path
    key: str
    cached: bool = False

    def file(self, name: str) -> Path:
        return self.dir / name


@dataclass
class ArtifactStore:
    root: Path
    records: list[StageRecord] = field(default_factory=list)

    def _dir(self, scope: str, stage: str, key: str) -> Path:
        return self.root / scope / stage / key

    def has(self, scope: str, stage: str, parts: dict) -> bool:
        """Whether the artifact for (scope, stage, parts) is already stored."""
        return (self._dir(scope, stage, make_key(stage, parts)) / META).exists()

    def get_or_make(
        self,
        scope: str,
        stage: str,
        parts: dict,
        model_cls: type[A],
        make: Callable[[Path], A],
    ) -> Stored[A]:
        """Load the artifact for (scope, stage, parts) or build it with ``make(tmp_dir)``.

        ``make`` writes its files into ``tmp_dir`` and returns the artifact model; the
        directory is renamed into place afterwards. Every call is also recorded in
        ``records`` (for the manifest's per-stage timings and cache hits).
        """
        key = make_key(stage, parts)
        final = self._dir(scope, stage, key)
        meta = final / META
        started = time.perf_counter()
        if meta.exists():
            try:
                model = model_cls.model_validate_json(meta.read_text(encoding="utf-8"))
                self.records.append(StageRecord(stage, key, True, time.perf_counter() - started))
                log.debug("%s/%s: cache hit %s", scope, stage, key)
                return Stored(model, final, key, cached=True)
            except ValueError:
                log.warning("%s: unreadable artifact, rebuilding", meta)
                shutil.rmtree(final, ignore_errors=True)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{key}.{os.getpid()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            model = make(tmp)
            (tmp / META).write_text(model.model_dump_json(indent=1), encoding="utf-8")
            (tmp / "key.json").write_text(
                json.dumps({"stage": stage, **parts}, sort_keys=True, default=str, ensure_ascii=False, indent=1),
                encoding="utf-8",
            )
            if final.exists():  # another process finished the same work first: keep theirs
                shutil.rmtree(tmp, ignore_errors=True)
                model = model_cls.model_validate_json(meta.read_text(encoding="utf-8"))
            else:
                os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.records.append(StageRecord(stage, key, False, time.perf_counter() - started))
        return Stored(model, final, key)

    def sweep_temporaries(self) -> int:
        """Remove temp directories left by crashed runs; returns how many.

        Names carry the writer's pid (``.<key>.<pid>.tmp``): a directory whose process is
        still alive belongs to a concurrent worker and is left alone.
        """
        removed = 0
        if not self.root.exists():
            return 0
        for tmp in self.root.rglob(".*.tmp"):
            if tmp.is_dir() and not _pid_alive(tmp.name):
                shutil.rmtree(tmp, ignore_errors=True)
                removed += 1
        return removed


def _pid_alive(tmp_name: str) -> bool:
    """Whether the writer named in a temp directory (``.<key>.<pid>.tmp``) is another live process."""
    try:
        pid = int(tmp_name.rsplit(".", 2)[-2])
    except (ValueError, IndexError):
        return False
    return pid != os.getpid() and pid_alive(pid)


def atomic_write_with(path: Path, write: Callable[[Path], object]) -> None:
    """``write(tmp)`` to a temporary name beside ``path``, then rename: readers never see a
    partial file, and a failed write leaves no temporary behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copy to a temp name beside ``dst`` then rename: readers never see a partial file."""
    atomic_write_with(dst, lambda tmp: shutil.copyfile(src, tmp))
