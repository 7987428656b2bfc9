"""The model engines of one worker process: made once, handed to every episode job.

Loading a model costs seconds (Whisper, the speaker encoder's torch start-up, Spleeter's
78 MB of weights, ONNX sessions for OCR and voices); a batch or farm worker that reloaded
them per episode would spend a large share of a short episode on start-up. So each entry
point makes one ``Resources`` per process (``locpipe run`` and each ``--jobs`` worker, the
watch daemon's child, a farm worker's pool process) and passes it to ``run_episode``.

Engines are created on first use and kept; ``created`` counts how many of each kind were
made in this process (the batch benchmark reads the log lines to show "once per process").
Engines are not shared between threads for work, except ASR, which runs in one thread beside
OCR: the lock only guards creation.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from locpipe.backends.asr.base import ASRBackend, ASROptions
    from locpipe.backends.mt.base import TranslationBackend
    from locpipe.backends.ocr.rapidocr import SubtitleOCR
    from locpipe.backends.separation.spleeter import SpleeterSeparator
    from locpipe.backends.tts.base import TTSBackend

log = logging.getLogger(__name__)

#: the log line every engine creation writes (benchmarks/pipeline.py counts them)
CREATED_MESSAGE = "model engine created: %s (%d in this process, %.2f s)"


class Resources:
    """Engines by (kind, backend, options); see the module docstring."""

    def __init__(self) -> None:
        self._engines: dict[tuple[str, str, Hashable], Any] = {}
        self._lock = threading.Lock()
        self.created: Counter[str] = Counter()

    def _get(self, kind: str, name: str, options: Hashable, make: Callable[[], Any]) -> Any:
        key = (kind, name, options)
        with self._lock:
            if key not in self._engines:
                started = time.perf_counter()
                self._engines[key] = make()
                label = f"{kind}:{name}"
                self.created[label] += 1
                log.info(CREATED_MESSAGE, label, self.created[label], time.perf_counter() - started)
            return self._engines[key]

    def asr(self, name: str, options: ASROptions) -> ASRBackend:
        from locpipe.backends.asr.base import get_asr_backend

        return self._get("asr", name, options, lambda: get_asr_backend(name, options))

    def ocr(self, threads: int) -> SubtitleOCR:
        from locpipe.backends.ocr import OCR

        return self._get("ocr", "rapidocr", threads, lambda: OCR.create("rapidocr", threads))

    def mt(self, name: str, threads: int | None = None) -> TranslationBackend:
        """A translation engine; ``threads`` is the worker's CPU share for a model run here (the
        local LLM), given when the engine is made (one engine per name: the model loads once)."""
        from locpipe.backends.mt.base import get_mt_backend

        def make() -> TranslationBackend:
            backend = get_mt_backend(name)
            backend.configure_threads(threads)
            return backend

        return self._get("mt", name, None, make)

    def tts(self, name: str) -> TTSBackend:
        from locpipe.backends.tts.base import get_tts_backend

        return self._get("tts", name, None, lambda: get_tts_backend(name))

    def speaker_encoder(self, threads: int) -> Any:
        """Resemblyzer's VoiceEncoder; raises SpeakersUnavailable where it cannot load (not cached)."""
        from locpipe.backends.speaker import SPEAKER_ENCODERS

        return self._get("speaker", "resemblyzer", threads, lambda: SPEAKER_ENCODERS.create("resemblyzer", threads))

    def separator(self) -> SpleeterSeparator:
        from locpipe.backends.separation import SEPARATORS

        return self._get("separation", "spleeter-2stems", None, lambda: SEPARATORS.create("spleeter-2stems"))
