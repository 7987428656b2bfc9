"""Transcribe: source-language cues from the episode's audio.

One transcript per episode serves every market. The backend (faster-whisper by default)
does the recognition and drops likely hallucinations; this stage numbers the cues and
records what was dropped so QC can show it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from locpipe.artifacts import Cue, Transcript
from locpipe.backends.asr.base import ASRBackend

log = logging.getLogger(__name__)


def renumber(cues: list[Cue]) -> list[Cue]:
    ordered = sorted(cues, key=lambda c: (c.start, c.end))
    return [c.model_copy(update={"index": i}) for i, c in enumerate(ordered)]


def transcribe_audio(audio_16k: Path, backend: ASRBackend, *, language: str = "zh") -> Transcript:
    cues, dropped = backend.transcribe(audio_16k)
    cues = renumber([c for c in cues if c.text.strip()])
    log.info("transcribed %d cues (%d dropped by guards)", len(cues), len(dropped))
    return Transcript(language=language, cues=cues, backend=backend.name, model=backend.version, dropped=dropped)
