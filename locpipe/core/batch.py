"""Batch execution: find episodes, run them in parallel, write the manifest.

Episodes run in worker processes (``--jobs``), each loading its own models: ONNX Runtime
and CTranslate2 keep thread pools that do not survive ``fork``, so workers are spawned.
The CPU is shared out: each worker's inference threads = cores // jobs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, replace
from datetime import datetime, timezone
from pathlib import Path

from locpipe.config import config_hash
from locpipe.core.pipeline import EpisodeReport, ProgressFn, RunSettings, UnitReport, pipeline_versions, run_episode
from locpipe.core.store import ArtifactStore, atomic_write_text
from locpipe.errors import InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg"}
#: names a producer's copy tool uses while a file is still arriving
TEMPORARY = re.compile(r"(^\.|\.part$|\.tmp$|\.crdownload$|~$)", re.I)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def discover_episodes(inputs: Iterable[Path]) -> list[Path]:
    """Video files from directories (not recursive) and explicitly named files, in natural order."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted((p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS
                             and not TEMPORARY.search(p.name)), key=_natural_key)
        elif item.exists():
            found.append(item)
        else:
            raise InputError(item, "no such file or directory")
    seen: set[Path] = set()
    unique = []
    for p in found:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique


def shard_of(episode: Path, count: int) -> int:
    """The shard (0..count-1) an episode belongs to, from a hash of its file name.

    Hashing the name, not the position in the listing, keeps an episode in the same shard
    when the producer adds episodes between two array tasks, and on every machine.
    """
    digest = hashlib.sha256(episode.name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def select_shard(episodes: list[Path], shard: tuple[int, int] | None) -> list[Path]:
    """Deterministic ~1/N of the episodes for array-job schedulers (index I of N, 0-based)."""
    if shard is None:
        return episodes
    index, count = shard
    return [p for p in episodes if shard_of(p, count) == index]


# --------------------------------------------------------------------------- execution


def _worker_run(path: Path, settings: RunSettings, events) -> EpisodeReport:
    from locpipe.core.logs import setup_logging

    setup_logging(os.environ.get("LOCPIPE_LOG_LEVEL", "WARNING"), os.environ.get("LOCPIPE_LOG_FORMAT", "text"))
    return run_episode(path, settings, lambda *ev: events.put(ev))


def run_batch(episodes: list[Path], settings: RunSettings, *, jobs: int = 1,
              progress: ProgressFn | None = None) -> list[EpisodeReport]:
    """Run every episode; a failing episode never stops the others."""
    ArtifactStore(settings.work_dir).sweep_temporaries()
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs, len(episodes) or 1))
    settings = replace(settings, asr=replace(settings.asr, threads=max(1, cores // jobs)))
    progress = progress or (lambda *a: None)
    if jobs == 1:
        return [run_episode(p, settings, progress) for p in episodes]
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        events = manager.Queue()
        stop = threading.Event()
        pump = threading.Thread(target=_pump, args=(events, progress, stop), daemon=True)
        pump.start()
        reports: dict[Path, EpisodeReport] = {}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
            futures = {pool.submit(_worker_run, p, settings, events): p for p in episodes}
            for fut in as_completed(futures):
                path = futures[fut]
                try:
                    reports[path] = fut.result()
                except Exception as exc:  # a worker died (OOM, segfault): report, keep going
                    reports[path] = _crashed(path, settings, exc)
        stop.set()
        pump.join(timeout=2)
    return [reports[p] for p in episodes]


def _pump(events, progress: Callable, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            progress(*events.get(timeout=0.2))
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return


def _crashed(path: Path, settings: RunSettings, exc: BaseException) -> EpisodeReport:
    from locpipe.core.pipeline import episode_name

    name = episode_name(path)
    msg = f"worker process died: {type(exc).__name__}: {exc}"
    return EpisodeReport(episode=name, source=str(path), units=[
        UnitReport(episode=name, market=m.code, status="failed", error=msg, failed_stage="worker")
        for m in settings.markets])


# --------------------------------------------------------------------------- manifest


def write_manifest(out_dir: Path, reports: list[EpisodeReport], settings: RunSettings, started: float) -> Path:
    """Merge this run's units into OUT_DIR/manifest.json (keyed by episode and market)."""
    path = out_dir / "manifest.json"
    existing: dict = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            log.warning("%s is unreadable; starting a new manifest", path)
    units = {(u["episode"], u["market"], u.get("distributor", "")): u for u in existing.get("units", [])}
    episodes = {e["episode"]: e for e in existing.get("episodes", [])}
    for rep in reports:
        episodes[rep.episode] = {"episode": rep.episode, "source": rep.source, "sha256": rep.sha256,
                                 "duration": rep.duration, "shared_stages": rep.shared_stages}
        for unit in rep.units:
            units[(unit.episode, unit.market, unit.distributor)] = asdict(unit)
    manifest = {
        "tool": "locpipe",
        "versions": pipeline_versions(),
        "updated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "last_run": {
            "seconds": round(time.perf_counter() - started, 2),
            "distributor": settings.distributor,
            "distributors": list(settings.distributors),
            "markets": {m.code: {"config_hash": config_hash(m.config, m.profile), "file": str(m.source)}
                        for m in settings.markets},
            "asr": {"backend": settings.asr_backend, **asdict(settings.asr)},
        },
        "episodes": sorted(episodes.values(), key=lambda e: e["episode"]),
        "units": sorted(units.values(), key=lambda u: (u["episode"], u["market"], u.get("distributor", ""))),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(manifest, indent=1, ensure_ascii=False))
    return path
