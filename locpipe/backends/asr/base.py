"""Speech-recognition backend interface and registry.

Backends turn a 16 kHz mono WAV into source-language cues with word timings. Each lives in
its own module and registers under a name; the transcription stage only sees this interface.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import Cue
from locpipe.errors import BackendUnavailable


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


ASR_BACKENDS: dict[str, Callable[[ASROptions], ASRBackend]] = {}


def register(name: str):
    def deco(cls):
        cls.name = name
        ASR_BACKENDS[name] = cls
        return cls

    return deco


def get_asr_backend(name: str, options: ASROptions) -> ASRBackend:
    # import backends for their registration side effect
    from locpipe.backends.asr import faster_whisper_asr, openai_whisper_asr  # noqa: F401

    try:
        factory = ASR_BACKENDS[name]
    except KeyError:
        raise BackendUnavailable(f"unknown ASR backend {name!r}; available: {sorted(ASR_BACKENDS)}") from None
    return factory(options)
