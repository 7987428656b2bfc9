"""Batch execution: find episodes, run them one after another or in parallel worker processes.

Every process keeps one ``Resources`` (its loaded models) for all the episodes it runs:
``--jobs 1`` runs in this process, ``--jobs N`` in N spawned workers (ONNX Runtime and
CTranslate2 keep thread pools that do not survive ``fork``), each initialised once with its
own ``Resources`` and the CLI's logging. The CPU is shared out: inference threads = cores // jobs.
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import os
import queue
import re
import signal
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from locpipe.children import DIE_WITH_PARENT
from locpipe.core.names import episode_name
from locpipe.core.pipeline import run_episode
from locpipe.core.reports import EpisodeReport, ProgressFn, failed_episode
from locpipe.core.resources import Resources
from locpipe.core.settings import RunSettings
from locpipe.core.store import ArtifactStore
from locpipe.errors import ConfigError, InputError

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".ts", ".mts", ".flv", ".wmv", ".mpg", ".mpeg"}
#: names a producer's copy tool uses while a file is still arriving
TEMPORARY = re.compile(r"(^\.|\.part$|\.tmp$|\.crdownload$|~$)", re.I)


def _natural_key(path: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def discover_episodes(inputs: Iterable[Path]) -> list[Path]:
    """Video files from directories (not recursive) and explicitly named files, in natural order.

    Paths stay as given (the daemon takes them relative to its inbox); ffmpeg and PyAV get
    them absolute at the media boundary (``locpipe.media.ffmpeg.media_input``).
    """
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


def check_unique_names(episodes: Sequence[Path], *, windows: bool = False) -> None:
    """Two inputs that would export under one name would overwrite each other: refuse."""
    seen: dict[str, Path] = {}
    for path in episodes:
        name = episode_name(path, windows=windows)
        if name in seen:
            raise ConfigError(path, "", f"exports as {name!r}, like {seen[name]}: rename one of them "
                                        "or run the two series into different --out folders")
        seen[name] = path


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


#: the worker process's engines, made once by ``_worker_init`` and used for every episode it runs
_WORKER_RESOURCES: list[Resources] = []


def _worker_init(log_level: str, log_format: str) -> None:
    """Start of a ``--jobs`` worker process: the CLI's logging, and one Resources for its life.

    Ctrl-C reaches every process of the terminal's group: a worker ignores it (no traceback
    per worker) and the parent, which decides what an interrupt means, terminates it.
    """
    from locpipe.core.logs import setup_logging

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if DIE_WITH_PARENT is not None:  # a parent killed outright must not leave workers encoding
        DIE_WITH_PARENT()
    setup_logging(log_level, log_format)
    _WORKER_RESOURCES.append(Resources())


def _worker_run(path: Path, settings: RunSettings, events) -> EpisodeReport:
    return run_episode(path, settings, lambda *ev: events.put(ev), _WORKER_RESOURCES[0])


def run_batch(episodes: list[Path], settings: RunSettings, *, jobs: int = 1,
              progress: ProgressFn | None = None,
              finished: Callable[[EpisodeReport], None] | None = None) -> list[EpisodeReport]:
    """Run every episode; a failing episode never stops the others.

    ``finished`` is called with each episode's report as soon as it is done: after an
    interrupt (KeyboardInterrupt, re-raised once the workers are stopped) the caller still
    knows what finished and can record it.
    """
    finished = finished or (lambda _report: None)
    ArtifactStore(settings.work_dir).sweep_temporaries()
    cores = os.cpu_count() or 1
    jobs = max(1, min(jobs, len(episodes) or 1))
    settings = replace(settings, asr=replace(settings.asr, threads=max(1, cores // jobs)))
    progress = progress or (lambda *a: None)
    if jobs == 1:
        resources = Resources()
        done = []
        for p in episodes:
            done.append(run_episode(p, settings, progress, resources))
            finished(done[-1])
        return done
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        events = manager.Queue()
        stop = threading.Event()
        pump = threading.Thread(target=_pump, args=(events, progress, stop), daemon=True)
        pump.start()
        reports: dict[Path, EpisodeReport] = {}
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_worker_init,
                                 initargs=(settings.log_level, settings.log_format)) as pool:
            futures = {pool.submit(_worker_run, p, settings, events): p for p in episodes}
            try:
                for fut in as_completed(futures):
                    path = futures[fut]
                    try:
                        reports[path] = fut.result()
                    except Exception as exc:  # a worker died (OOM, segfault): report, keep going
                        reports[path] = _crashed(path, settings, exc)
                    finished(reports[path])
            except KeyboardInterrupt:
                _stop_workers(pool)
                raise
        stop.set()
        pump.join(timeout=2)
    return [reports[p] for p in episodes]


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Interrupted: cancel what has not started and terminate the running workers (their
    ffmpeg children die with them, ``locpipe.children``), so leaving the pool does not wait
    for episodes nobody will record."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle; gone after shutdown
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


def _pump(events, progress: Callable, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            progress(*events.get(timeout=0.2))
        except queue.Empty:
            continue
        except (EOFError, OSError):
            return


def _crashed(path: Path, settings: RunSettings, exc: BaseException) -> EpisodeReport:
    return failed_episode(episode_name(path, windows=settings.windows_names), str(path),
                          [m.code for m in settings.markets], f"worker process died: {type(exc).__name__}: {exc}",
                          "worker")
