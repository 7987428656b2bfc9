"""Fake ASR, MT and TTS engines registered in the real registries, for fast in-process pipeline tests.

They stand in for Whisper, the web translators and Piper/Kokoro only at the engine level:
everything around them (the registries, ``Resources``, the stage cache, ffmpeg ingest, mix,
render, QC and export) is the real pipeline. ``registered()`` adds them under their names
and removes exactly those names afterwards, so other tests see the registries unchanged.

``CALLS`` counts engine calls ("asr", "mt:<target language>", "tts") and ``MADE`` counts
engine instances per registry name, both process-wide; tests compare them before and after
a run.
"""

from __future__ import annotations

import wave
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from locpipe.artifacts import Cue, Word
from locpipe.backends.asr.base import ASR, ASRBackend, ASROptions
from locpipe.backends.mt.base import MT, TranslationBackend, TranslationRequest
from locpipe.backends.tts.base import TTS, TTSBackend, VoiceInfo
from locpipe.errors import BackendUnavailable

ASR_NAME = "fake-asr"
#: cannot be created here (as openai-whisper without torch: BackendUnavailable from __init__)
ASR_MISSING = "fake-asr-missing"
#: created fine, then recognition fails with BackendUnavailable inside the transcribe stage
ASR_BROKEN = "fake-asr-broken"
MT_NAME = "fake-mt"
#: check_available fails: choose_backend finds no usable backend for the market
MT_OFFLINE = "fake-mt-offline"
#: passes check_available, then translate() raises BackendUnavailable inside the stage
MT_BROKEN = "fake-mt-broken"
TTS_NAME = "fake-tts"
VOICE = "fake-en"
TTS_RATE = 22050

#: a tiny 360x640 render profile and subtitle style: the in-process pipeline tests' markets
TINY_PROFILE = {"width": 360, "height": 640, "reframe": "crop", "fps_policy": "keep-standard", "fps": 30,
                "preset": "ultrafast", "crf": 32, "maxrate": "1M", "bufsize": "2M", "audio_bitrate": "96k",
                "audio_sample_rate": 48000, "safe_zone": {"x0": 20, "y0": 40, "x1": 340, "y1": 600},
                "forensic_watermark": False}
TINY_SUBTITLES = {"font": "Noto Sans", "size": 24, "outline": 2, "margin_bottom": 60, "margin_sides": 20}

CALLS: Counter[str] = Counter()
MADE: Counter[str] = Counter()
#: (path, sample rate, channels, seconds) of every WAV the fake ASR was given
ASR_INPUTS: list[tuple[Path, int, int, float]] = []

#: the fixed source lines: (start, end, text)
LINES: list[tuple[float, float, str]] = [
    (0.30, 1.50, "你好，陆总。"),
    (1.90, 3.60, "昨晚你去哪了？"),
]
#: deterministic translations per target base language
TRANSLATIONS: dict[str, dict[str, str]] = {
    "en": {"你好，陆总。": "Hello, Mr Lu.", "昨晚你去哪了？": "Where were you last night?"},
    "es": {"你好，陆总。": "Hola, señor Lu.", "昨晚你去哪了？": "¿Dónde estabas anoche?"},
}


def fixed_cues() -> list[Cue]:
    """The fake recognizer's output: the fixed lines with one word per character."""
    cues = []
    for i, (start, end, text) in enumerate(LINES):
        chars = [c for c in text if c.isalnum()]
        step = (end - start) / len(chars)
        words = [Word(start=round(start + k * step, 3), end=round(start + (k + 1) * step, 3), text=ch,
                      probability=0.9) for k, ch in enumerate(chars)]
        cues.append(Cue(index=i, start=start, end=end, text=text, words=words, confidence=0.9))
    return cues


def translated(text: str, target: str, index: int) -> str:
    base = target.split("-")[0].lower()
    return TRANSLATIONS.get(base, {}).get(text, f"{base.upper()}:{index}")


class FakeASR(ASRBackend):
    def __init__(self, options: ASROptions):
        self.options = options
        MADE[self.name] += 1

    @property
    def version(self) -> str:
        return "fake-asr 1.0"

    def transcribe(self, wav: Path, *, clip: tuple[float, float] | None = None) -> tuple[list[Cue], list[dict]]:
        CALLS["asr"] += 1
        with wave.open(str(wav), "rb") as w:
            ASR_INPUTS.append((Path(wav), w.getframerate(), w.getnchannels(), w.getnframes() / w.getframerate()))
        return fixed_cues(), []


class MissingASR(FakeASR):
    def __init__(self, options: ASROptions):
        raise BackendUnavailable(f"{self.name}: model weights not installed (fake)")


class BrokenASR(FakeASR):
    def transcribe(self, wav: Path, *, clip: tuple[float, float] | None = None) -> tuple[list[Cue], list[dict]]:
        CALLS["asr"] += 1
        raise BackendUnavailable(f"{self.name}: decoder crashed (fake)")


class FakeMT(TranslationBackend):
    term_mode = "placeholder"

    def __init__(self) -> None:
        MADE[self.name] += 1

    @property
    def version(self) -> str:
        return f"{self.name} 1.0"

    def supports(self, source: str, target: str) -> bool:
        return source == "zh"

    def check_available(self) -> None:
        return None

    def translate(self, request: TranslationRequest) -> list[str]:
        CALLS[f"mt:{request.target_base}"] += 1
        return [translated(c.text, request.target_lang, c.index) for c in request.cues]


class OfflineMT(FakeMT):
    def check_available(self) -> None:
        raise BackendUnavailable(f"{self.name}: service offline (fake)")


class BrokenMT(FakeMT):
    def translate(self, request: TranslationRequest) -> list[str]:
        CALLS[f"mt:{request.target_base}"] += 1
        raise BackendUnavailable(f"{self.name}: quota exhausted (fake)")


class FakeTTS(TTSBackend):
    """One English voice; every line is a short tone whose length grows with the text."""

    quality = "natural"

    def __init__(self) -> None:
        MADE[self.name] += 1

    @property
    def version(self) -> str:
        return "fake-tts 1.0"

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return {VOICE: VoiceInfo(VOICE, "en-US", TTS_RATE, gender="female", quality="natural", licence="test")}

    @staticmethod
    def seconds_for(text: str) -> float:
        return round(0.4 + 0.01 * len(text), 3)

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        CALLS["tts"] += 1
        t = np.arange(int(self.seconds_for(text) * voice.sample_rate)) / voice.sample_rate
        return (0.5 * np.sin(2 * np.pi * 660.0 * t)).astype(np.float32)


_FAKES = ((ASR, ASR_NAME, FakeASR), (ASR, ASR_MISSING, MissingASR), (ASR, ASR_BROKEN, BrokenASR),
          (MT, MT_NAME, FakeMT), (MT, MT_OFFLINE, OfflineMT), (MT, MT_BROKEN, BrokenMT),
          (TTS, TTS_NAME, FakeTTS))


@contextmanager
def registered() -> Iterator[None]:
    """The fakes in the real registries for the duration of the block (then removed again)."""
    added = []
    try:
        for registry, name, cls in _FAKES:
            if name in registry._factories:
                raise RuntimeError(f"{registry.kind} backend {name!r} is already registered")
            registry.register(name)(cls)
            added.append((registry, name))
        yield
    finally:
        for registry, name in added:
            registry._factories.pop(name, None)
