"""Ingest: probe a source episode and extract its audio once for every later stage.

The 16 kHz mono WAV is what Whisper consumes; extracting it once means transcription and
(later) separation never decode the video again.
"""

from __future__ import annotations

from pathlib import Path

from locpipe.artifacts import IngestResult, MediaInfo
from locpipe.errors import InputError
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.media.probe import probe

#: episodes are 1-3 minutes; anything beyond this is almost certainly the wrong file
MAX_DURATION = 4 * 3600.0


def probe_episode(path: Path) -> MediaInfo:
    info = probe(path)
    if info.duration > MAX_DURATION:
        raise InputError(path, f"duration {info.duration:.0f} s is longer than {MAX_DURATION:.0f} s")
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
