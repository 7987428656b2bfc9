"""faster-whisper (CTranslate2) backend: the default ASR on CPU.

Why faster-whisper rather than openai-whisper by default: the same Whisper weights run
~6x faster on CPU with int8, VAD (silero, bundled) cuts music-only stretches before
decoding, and word timestamps come for free. The packaged Whisper base weights
(``locpipe.assets.whisper_base_dir``) are the offline default; any CTranslate2 model
directory, or a model name where a hub is reachable, can be configured instead.
"""

from __future__ import annotations

import logging
import time
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np

from locpipe.backends.asr.base import ASROptions, register
from locpipe.backends.asr.common import (  # noqa: F401  (guard_reason, confidence: re-exported)
    GUARDS_ID,
    MIN_SAMPLES,
    SAMPLE_RATE,
    ChineseNormalizer,
    DecodedSegment,
    DecodedWord,
    WhisperFamilyASR,
    confidence,
    guard_reason,
    segments_to_cues,
)
from locpipe.backends.registry import MODEL_LOADED
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)


@register("faster-whisper")
class FasterWhisperASR(WhisperFamilyASR):
    def __init__(self, options: ASROptions):
        self.options = options
        self._model = None
        self._normalize = ChineseNormalizer(options.language, options.task)

    @property
    def model_ref(self) -> str:
        if self.options.model:
            return self.options.model
        from locpipe.assets import whisper_base_dir

        return str(whisper_base_dir())

    @property
    def version(self) -> str:
        model = self.options.model or "packaged-whisper-base"
        return f"faster-whisper {pkg_version('faster-whisper')} model={model} {self.options.compute_type} {GUARDS_ID}"

    def _load(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            ref = self.model_ref
            started = time.perf_counter()
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
            log.info(MODEL_LOADED, f"faster-whisper {ref} (task={self.options.task}, {self.options.threads} threads)",
                     time.perf_counter() - started)
        return self._model

    def transcribe_array(self, audio: np.ndarray, *, offset: float = 0.0, prompt: str | None = None):
        """Recognize a 16 kHz float array; times are shifted by ``offset`` seconds."""
        opts = self.options
        if audio.size < MIN_SAMPLES:
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
        return segments_to_cues(map(_decoded, segments), offset=offset, normalize=self._normalize)


def _decoded(seg) -> DecodedSegment:
    """faster-whisper's Segment in the shared shape (segments stream: adapted one by one)."""
    words = [DecodedWord(w.start, w.end, w.word, w.probability) for w in (seg.words or [])]
    return DecodedSegment(seg.start, seg.end, seg.text, seg.no_speech_prob, seg.avg_logprob,
                          seg.compression_ratio, words)


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
