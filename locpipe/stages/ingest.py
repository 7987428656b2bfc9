"""Ingest: probe a source episode and extract its audio once for every later stage.

The 16 kHz mono WAV is what Whisper consumes; extracting it once means transcription and
(later) separation never decode the video again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from locpipe.artifacts import IngestResult, MediaInfo
from locpipe.core.store import atomic_write_text
from locpipe.errors import InputError
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.media.probe import probe

#: episodes are 1-3 minutes; anything beyond this is almost certainly the wrong file
MAX_DURATION = 4 * 3600.0
#: bump when MediaInfo gains a field or the probe a check: cached probes are redone (3: absolute
#: paths, truncation check)
PROBE_VERSION = 3


def probe_episode(path: Path) -> MediaInfo:
    info = probe(path)
    if info.duration > MAX_DURATION:
        raise InputError(path, f"duration {info.duration:.0f} s is longer than {MAX_DURATION:.0f} s")
    return info


def probe_cached(path: Path, cache_dir: Path) -> MediaInfo:
    """``probe_episode`` with a cache on (path, size, mtime): an unchanged rerun does not rehash.

    ``PROBE_VERSION`` is in the key: a probe that learns a new fact (the colour matrix) is redone.
    """
    st = path.stat()
    raw = f"v{PROBE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    quick = hashlib.sha256(raw.encode()).hexdigest()[:20]
    cache = cache_dir / f"{quick}.json"
    if cache.exists():
        try:
            return MediaInfo.model_validate_json(cache.read_text(encoding="utf-8"))
        except ValueError:
            pass
    info = probe_episode(path)
    atomic_write_text(cache, info.model_dump_json())
    return info


def extract_audio(info: MediaInfo, out_dir: Path) -> IngestResult:
    """Decode the first audio stream to 16 kHz mono PCM (Whisper's input format)."""
    result = IngestResult(info=info)
    run_ffmpeg(
        ["-i", info.path, "-map", "0:a:0", "-vn", "-ac", "1", "-ar", "16000", "-c:a", "pcm_s16le",
         str(out_dir / result.audio_16k)],
        what=f"audio extraction from {Path(info.path).name}",
    )
    return result
