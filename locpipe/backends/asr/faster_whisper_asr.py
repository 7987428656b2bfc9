"""faster-whisper (CTranslate2) backend: the default ASR on CPU.

Why faster-whisper rather than openai-whisper by default: the same Whisper weights run
~6x faster on CPU with int8, VAD (silero, bundled) cuts music-only stretches before
decoding, and word timestamps come for free. The packaged Whisper base weights
(``locpipe.assets.whisper_base_dir``) are the offline default; any CTranslate2 model
directory, or a model name where a hub is reachable, can be configured instead.
"""

from __future__ import annotations

import logging
import re
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np

from locpipe.artifacts import Cue, Word
from locpipe.backends.asr.base import ASRBackend, ASROptions, register
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Hallucination guards (thresholds from Whisper's own decoding heuristics, tightened for
# music beds: Whisper invents "subscribe" lines and repeats itself over closing music).
NO_SPEECH_MAX = 0.6
LOGPROB_MIN_WHEN_NO_SPEECH = -1.0
LOGPROB_MIN = -1.2
COMPRESSION_RATIO_MAX = 2.4
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


@register("faster-whisper")
class FasterWhisperASR(ASRBackend):
    def __init__(self, options: ASROptions):
        self.options = options
        self._model = None
        self._t2s = None

    @property
    def model_ref(self) -> str:
        if self.options.model:
            return self.options.model
        from locpipe.assets import whisper_base_dir

        return str(whisper_base_dir())

    @property
    def version(self) -> str:
        model = self.options.model or "packaged-whisper-base"
        guards = f"guards={NO_SPEECH_MAX}/{LOGPROB_MIN_WHEN_NO_SPEECH}/{LOGPROB_MIN}/{COMPRESSION_RATIO_MAX}"
        return f"faster-whisper {pkg_version('faster-whisper')} model={model} {self.options.compute_type} {guards}"

    def _load(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            ref = self.model_ref
            try:
                self._model = WhisperModel(
                    ref,
                    device=self.options.device,
                    compute_type=self.options.compute_type,
                    cpu_threads=self.options.threads,
                    local_files_only=not Path(ref).exists() and _offline(),
                )
            except Exception as exc:  # hub errors come in many types
                raise BackendUnavailable(
                    f"faster-whisper cannot load model {ref!r}: {exc}. Use a local CTranslate2 model "
                    "directory, or omit --model for the packaged Whisper base weights."
                ) from None
        return self._model

    def _normalize(self, text: str) -> str:
        """Whisper often writes Traditional characters for Mandarin: convert to Simplified.

        Surrounding spaces are kept: Whisper's English words carry their leading space.
        """
        if self.options.language != "zh" or self.options.task != "transcribe":
            return text
        if self._t2s is None:
            from opencc import OpenCC

            self._t2s = OpenCC("t2s")
        return self._t2s.convert(text)

    def transcribe(self, wav: Path, *, clip: tuple[float, float] | None = None) -> tuple[list[Cue], list[dict]]:
        from faster_whisper.audio import decode_audio

        audio = decode_audio(str(wav), sampling_rate=SAMPLE_RATE)
        offset = 0.0
        if clip:
            offset = max(0.0, clip[0])
            audio = audio[int(offset * SAMPLE_RATE) : int(clip[1] * SAMPLE_RATE)]
        return self.transcribe_array(audio, offset=offset)

    def transcribe_array(self, audio: np.ndarray, *, offset: float = 0.0, prompt: str | None = None):
        """Recognize a 16 kHz float array; times are shifted by ``offset`` seconds."""
        opts = self.options
        if audio.size < SAMPLE_RATE // 10:
            return [], []
        segments, _info = self._load().transcribe(
            audio,
            language=opts.language,
            task=opts.task,
            beam_size=opts.beam_size,
            vad_filter=opts.vad,
            word_timestamps=opts.word_timestamps,
            condition_on_previous_text=False,
            initial_prompt=prompt,
        )
        cues: list[Cue] = []
        dropped: list[dict] = []
        for seg in segments:
            text = self._normalize(seg.text).strip()
            reason = guard_reason(text, seg.no_speech_prob, seg.avg_logprob, seg.compression_ratio)
            if reason:
                dropped.append({"start": round(seg.start + offset, 3), "end": round(seg.end + offset, 3),
                                "text": text, "reason": reason})
                log.info("dropped ASR segment %.1f-%.1f %r: %s", seg.start + offset, seg.end + offset, text, reason)
                continue
            words = [
                Word(start=round(w.start + offset, 3), end=round(w.end + offset, 3),
                     text=self._normalize(w.word), probability=round(w.probability, 3))
                for w in (seg.words or [])
            ]
            cues.append(
                Cue(index=len(cues), start=round(seg.start + offset, 3), end=round(seg.end + offset, 3),
                    text=text, words=words, confidence=round(confidence(seg.avg_logprob), 3), source="asr")
            )
        return cues, dropped


def speech_regions(wav: Path, *, min_silence: float = 0.2) -> list[tuple[float, float]]:
    """Speech (start, end) seconds from the silero VAD bundled with faster-whisper."""
    from faster_whisper.audio import decode_audio
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    audio = decode_audio(str(wav), sampling_rate=SAMPLE_RATE)
    stamps = get_speech_timestamps(audio, VadOptions(min_silence_duration_ms=int(min_silence * 1000),
                                                     speech_pad_ms=30))
    return [(t["start"] / SAMPLE_RATE, t["end"] / SAMPLE_RATE) for t in stamps]


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0")
