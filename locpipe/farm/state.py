"""The farm's shared state on the output path: per-unit records, locks, dead letters, manifest.

Why files on the shared path and not Redis: the exports live there, so "is this unit done?"
is answered next to them, survives a broker that restarts empty, and is readable by people
and by ``locpipe farm status`` without the broker. Layout::

    OUT/.locpipe-farm/units/<unit>.json   one record per unit (written atomically): status,
                                          attempts per phase, commits, outputs and their sizes,
                                          the unit's manifest entry
    OUT/.locpipe-farm/locks/<unit>.lock   flock held while a worker runs the unit; the kernel
                                          (or the NFS lock manager) drops it when the worker dies
    OUT/.locpipe-farm/dead/<unit>.json    dead-letter record: unit, phase, error, attempts
    OUT/manifest.json                     rebuilt from all records under a lock, atomically

Records are the source of truth and each worker writes only its own unit's record while it
holds that unit's lock, so concurrent workers on many machines never write the same file;
``manifest.json`` is a merged view (each commit merges its unit under a lock; a full
rebuild from the records repairs anything a broken lock manager lost).
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field

from locpipe.core.locks import Busy, file_lock
from locpipe.core.store import atomic_write_text

log = logging.getLogger(__name__)

FARM_DIR = ".locpipe-farm"


class UnitRecord(BaseModel):
    """What the farm knows about one unit (or an episode's shared asr phase)."""

    unit_id: str
    episode: str = ""
    market: str = ""
    distributor: str = ""
    config_hash: str = ""
    source: str = ""
    #: (size, mtime_ns) of the source when the outputs were made: a replaced source is redone
    source_stat: tuple[int, int] | None = None
    #: queued | running | retry | ok | failed (failed = dead-lettered)
    status: str = "queued"
    phase: str = ""
    #: export | ab-base | ab-copy | asr (``UnitSpec.role``; asr: an episode's shared phase)
    role: str = "export"
    #: when the current (or last) phase started, and on which Celery node (its lease names it)
    started: str = ""
    node: str = ""
    #: wall seconds of each finished phase (the benchmark's per-distributor cost comes from these)
    phase_seconds: dict[str, float] = Field(default_factory=dict)
    submitted: str = ""
    attempts: dict[str, int] = Field(default_factory=dict)
    #: completed executions that published outputs; exactly-once means this stays 1
    commits: int = 0
    #: deliveries that found the unit complete and did nothing
    noops: int = 0
    export_id: str = ""
    outputs: dict[str, str] = Field(default_factory=dict)
    output_sizes: dict[str, int] = Field(default_factory=dict)
    error: str = ""
    worker: str = ""
    pid: int | None = None
    updated: str = ""
    #: the unit's manifest entry (``UnitReport`` as a dict) and its episode's facts
    report: dict | None = None
    episode_info: dict | None = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def source_stat(path: str | Path) -> tuple[int, int] | None:
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def is_complete(rec: UnitRecord) -> bool:
    """Outputs exist with the sizes they were published with, from the same source: a no-op."""
    if rec.status != "ok" or not rec.outputs:
        return False
    if rec.source and rec.source_stat is not None and source_stat(rec.source) != tuple(rec.source_stat):
        return False
    for key, path in rec.outputs.items():
        try:
            size = Path(path).stat().st_size
        except OSError:
            return False
        if key in rec.output_sizes and size != rec.output_sizes[key]:
            return False
    return True


class FarmState:
    """Records, locks and dead letters under ``OUT/.locpipe-farm``."""

    def __init__(self, out_dir: Path | str):
        self.out_dir = Path(out_dir)
        self.root = self.out_dir / FARM_DIR

    def record_path(self, unit_id: str) -> Path:
        return self.root / "units" / f"{unit_id}.json"

    def load(self, unit_id: str) -> UnitRecord | None:
        path = self.record_path(unit_id)
        try:
            return UnitRecord.model_validate_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as exc:  # only a torn write by a foreign tool could do this: start over
            log.warning("%s: unreadable unit record (%s); treating the unit as new", path, exc)
            return None

    def save(self, rec: UnitRecord) -> None:
        rec.updated = now()
        atomic_write_text(self.record_path(rec.unit_id), rec.model_dump_json(indent=1))

    def records(self) -> list[UnitRecord]:
        folder = self.root / "units"
        if not folder.is_dir():
            return []
        out = []
        for path in sorted(folder.glob("*.json")):
            rec = self.load(path.stem)
            if rec is not None:
                out.append(rec)
        return out

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Exclusive, non-blocking: raises ``Busy`` if a live worker holds it."""
        with file_lock(self.root / "locks" / f"{name}.lock", blocking=False, owner=worker_name()):
            yield

    def dead_letter(self, rec: UnitRecord, phase: str, error: str, unit: dict) -> Path:
        """Write ``dead/<unit>.json``: what failed, where, how often; people retry from it."""
        path = self.root / "dead" / f"{rec.unit_id}.json"
        body = {"unit_id": rec.unit_id, "episode": rec.episode, "market": rec.market, "phase": phase,
                "error": error, "attempts": rec.attempts.get(phase, 0), "all_attempts": rec.attempts,
                "worker": worker_name(), "time": now(), "unit": unit}
        atomic_write_text(path, json.dumps(body, indent=1, ensure_ascii=False))
        return path

    def mark_submitted(self, rec: UnitRecord) -> bool:
        """A unit just queued by ``submit``: recorded as queued so ``farm status`` lists it before
        any worker has seen it. A unit already known (running, done, retrying) is left as it is."""
        try:
            with self.lock(rec.unit_id):
                if self.load(rec.unit_id) is not None:
                    return False
                rec.submitted = now()
                self.save(rec)
                return True
        except Busy:
            return False

    def reset_failed(self, unit_id: str) -> bool:
        """A resubmitted dead-lettered unit starts with fresh attempts; True if it was reset."""
        try:
            with self.lock(unit_id):
                rec = self.load(unit_id)
                if rec is None or rec.status != "failed":
                    return False
                rec.status, rec.attempts, rec.error = "queued", {}, ""
                self.save(rec)
                (self.root / "dead" / f"{unit_id}.json").unlink(missing_ok=True)
                return True
        except Busy:
            return False

    def dead_letters(self) -> list[dict]:
        folder = self.root / "dead"
        if not folder.is_dir():
            return []
        return [json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))]

    # ------------------------------------------------------------------ manifest

    def merge_manifest(self, settings, only: list[UnitRecord] | None = None) -> Path:
        """Fold finished units' records into ``OUT/manifest.json`` (keyed by episode and market).

        ``only``: just these records (what a worker does after each commit: cost independent
        of the series size); None: every record (``locpipe farm status --rebuild-manifest``).
        ``write_manifest`` merges under the manifest lock of OUT, shared with ``run`` and ``watch``.
        """
        import time

        from locpipe.core.manifest import write_manifest
        from locpipe.core.reports import EpisodeReport, UnitReport

        episodes: dict[str, EpisodeReport] = {}
        for rec in self.records() if only is None else only:
            if rec.report is None or rec.status not in ("ok", "failed"):
                continue
            info = rec.episode_info or {}
            ep = episodes.setdefault(rec.episode, EpisodeReport(
                episode=rec.episode, source=rec.source, sha256=info.get("sha256", ""),
                duration=info.get("duration", 0.0), shared_stages=info.get("shared_stages", [])))
            ep.units.append(UnitReport(**rec.report))
        return write_manifest(self.out_dir, list(episodes.values()), settings, time.perf_counter())
