"""What every Whisper-family backend shares: audio loading, hallucination guards, t2s, cues.

Why one module: the faster-whisper and openai-whisper backends must give the same output
shape (cues with words, confidence and dropped segments) and drop the same hallucinations;
each backend only adapts its library's segments to :class:`DecodedSegment`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locpipe.artifacts import Cue, Word
from locpipe.backends.asr.base import ASRBackend

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
#: shorter audio than this (samples) is not worth decoding
MIN_SAMPLES = SAMPLE_RATE // 10

# Hallucination guards (thresholds from Whisper's own decoding heuristics, tightened for
# music beds: Whisper invents "subscribe" lines and repeats itself over closing music).
NO_SPEECH_MAX = 0.6
LOGPROB_MIN_WHEN_NO_SPEECH = -1.0
LOGPROB_MIN = -1.2
COMPRESSION_RATIO_MAX = 2.4
GUARDS_ID = f"guards={NO_SPEECH_MAX}/{LOGPROB_MIN_WHEN_NO_SPEECH}/{LOGPROB_MIN}/{COMPRESSION_RATIO_MAX}"
_REPEAT = re.compile(r"(.{2,}?)\1{3,}")
#: stock phrases Whisper hallucinates over silence/music in Chinese video
_STOCK_PHRASES = ("请不吝点赞", "订阅", "字幕由", "感谢观看", "明镜与点点", "Amara.org",
                  "next video", "thanks for watching", "thank you for watching", "subscribe")


def guard_reason(text: str, no_speech_prob: float, avg_logprob: float, compression_ratio: float) -> str | None:
    """Why a decoded segment should be dropped as a likely hallucination, or None to keep it."""
    if not text.strip():
        return "empty"
    if no_speech_prob > NO_SPEECH_MAX and avg_logprob < LOGPROB_MIN_WHEN_NO_SPEECH:
        return f"no speech (p={no_speech_prob:.2f}, logprob={avg_logprob:.2f})"
    if avg_logprob < LOGPROB_MIN:
        return f"low confidence (logprob={avg_logprob:.2f})"
    if compression_ratio > COMPRESSION_RATIO_MAX or _REPEAT.search(text):
        return f"repetition loop (compression={compression_ratio:.2f})"
    if any(p in text.lower() for p in _STOCK_PHRASES):
        return "stock hallucination phrase"
    return None


def confidence(avg_logprob: float) -> float:
    """Map Whisper's average log-probability to a 0-1 figure people can read."""
    return float(np.clip(np.exp(avg_logprob), 0.0, 1.0))


def load_audio(wav: Path, clip: tuple[float, float] | None = None) -> tuple[np.ndarray, float]:
    """16 kHz mono float samples of ``wav`` (only ``clip`` seconds if given) and their offset.

    Decoded with PyAV through faster-whisper (a core dependency), so no backend needs an
    ``ffmpeg`` on PATH (openai-whisper's own loader shells out to one).
    """
    from faster_whisper.audio import decode_audio

    audio = decode_audio(str(wav), sampling_rate=SAMPLE_RATE)
    offset = 0.0
    if clip:
        offset = max(0.0, clip[0])
        audio = audio[int(offset * SAMPLE_RATE) : int(clip[1] * SAMPLE_RATE)]
    return audio, offset


class ChineseNormalizer:
    """Whisper often writes Traditional characters for Mandarin: convert to Simplified.

    Only for Chinese transcription (translation output is English). Surrounding spaces are
    kept: Whisper's English words carry their leading space. OpenCC loads lazily.
    """

    def __init__(self, language: str, task: str):
        self.active = language == "zh" and task == "transcribe"
        self._t2s = None

    def __call__(self, text: str) -> str:
        if not self.active:
            return text
        if self._t2s is None:
            from opencc import OpenCC

            self._t2s = OpenCC("t2s")
        return self._t2s.convert(text)


@dataclass(frozen=True)
class DecodedWord:
    start: float
    end: float
    text: str
    probability: float


@dataclass(frozen=True)
class DecodedSegment:
    """One decoded Whisper segment, whichever library produced it."""

    start: float
    end: float
    text: str
    no_speech_prob: float
    avg_logprob: float
    compression_ratio: float
    words: list[DecodedWord] = field(default_factory=list)


def segments_to_cues(segments: Iterable[DecodedSegment], *, offset: float,
                     normalize: ChineseNormalizer) -> tuple[list[Cue], list[dict]]:
    """Kept cues and dropped segments (with the guard's reason); times shifted by ``offset``."""
    cues: list[Cue] = []
    dropped: list[dict] = []
    for seg in segments:
        start, end = round(seg.start + offset, 3), round(seg.end + offset, 3)
        text = normalize(seg.text).strip()
        reason = guard_reason(text, seg.no_speech_prob, seg.avg_logprob, seg.compression_ratio)
        if reason:
            dropped.append({"start": start, "end": end, "text": text, "reason": reason})
            log.info("dropped ASR segment %.1f-%.1f %r: %s", start, end, text, reason)
            continue
        words = [Word(start=round(w.start + offset, 3), end=round(w.end + offset, 3),
                      text=normalize(w.text), probability=round(w.probability, 3)) for w in seg.words]
        cues.append(Cue(index=len(cues), start=start, end=end, text=text, words=words,
                        confidence=round(confidence(seg.avg_logprob), 3), source="asr"))
    return cues, dropped


class WhisperFamilyASR(ASRBackend):
    """A backend that recognizes 16 kHz arrays: reading the WAV (or a clip of it) is shared."""

    def transcribe(self, wav: Path, *, clip: tuple[float, float] | None = None) -> tuple[list[Cue], list[dict]]:
        audio, offset = load_audio(wav, clip)
        return self.transcribe_array(audio, offset=offset)

    def transcribe_array(self, audio: np.ndarray, *, offset: float = 0.0,
                         prompt: str | None = None) -> tuple[list[Cue], list[dict]]:
        """Recognize a 16 kHz float array; times are shifted by ``offset`` seconds."""
        raise NotImplementedError
