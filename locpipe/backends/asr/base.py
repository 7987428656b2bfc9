"""Speech-recognition backend interface and registry.

Backends turn a 16 kHz mono WAV into source-language cues with word timings. Each lives in
its own module and registers under a name; the transcription stage only sees this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import Cue
from locpipe.backends.registry import Registry


@dataclass(frozen=True)
class ASROptions:
    language: str = "zh"
    #: "transcribe" (source text) or "translate" (Whisper's speech -> English)
    task: str = "transcribe"
    model: str | None = None
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 2
    vad: bool = True
    word_timestamps: bool = True
    beam_size: int = 5


class ASRBackend(ABC):
    name: str = ""

    @property
    @abstractmethod
    def version(self) -> str:
        """Backend library version plus model identity, for cache keys and the manifest."""

    @abstractmethod
    def transcribe(self, wav: Path, *, clip: tuple[float, float] | None = None) -> tuple[list[Cue], list[dict]]:
        """Recognize ``wav`` (optionally only the ``clip`` interval in seconds).

        Returns the kept cues and the segments dropped by hallucination guards.
        """


ASR: Registry[ASRBackend] = Registry("ASR", ("locpipe.backends.asr.faster_whisper_asr",
                                             "locpipe.backends.asr.openai_whisper_asr"))
register = ASR.register


def get_asr_backend(name: str, options: ASROptions) -> ASRBackend:
    return ASR.create(name, options)
