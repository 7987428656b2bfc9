"""Whisper's own speech -> English translation: the offline English backend.

Nothing on the package registries translates Chinese text to English offline, but Whisper
was trained to translate speech. Each source cue's audio (with a little context on both
sides) is translated on its own, so the English stays aligned one-to-one with the cues.
The quality is rough (base model); online or LLM backends are preferred when configured.
"""

from __future__ import annotations

from importlib.metadata import version as pkg_version

from locpipe.backends.asr.base import ASROptions
from locpipe.backends.mt.base import TranslationBackend, TranslationRequest, register
from locpipe.errors import BackendUnavailable

#: seconds of audio kept around each cue, so the first and last syllables are not clipped
PAD = 0.25
SAMPLE_RATE = 16000


@register("whisper-translate")
class WhisperTranslate(TranslationBackend):
    def __init__(self, threads: int = 2):
        self.threads = threads
        self._asr = None

    @property
    def version(self) -> str:
        return f"faster-whisper {pkg_version('faster-whisper')} packaged-whisper-base task=translate"

    def supports(self, source: str, target: str) -> bool:
        return target == "en"

    def check_available(self) -> None:
        from locpipe.assets import whisper_base_dir

        whisper_base_dir()

    def _backend(self):
        if self._asr is None:
            from locpipe.backends.asr.faster_whisper_asr import FasterWhisperASR

            self._asr = FasterWhisperASR(
                ASROptions(language="zh", task="translate", vad=False, word_timestamps=False, threads=self.threads)
            )
        return self._asr

    def translate(self, request: TranslationRequest) -> list[str]:
        if request.audio_16k is None:
            raise BackendUnavailable("whisper-translate needs the episode audio (speech -> English)")
        from faster_whisper.audio import decode_audio

        audio = decode_audio(str(request.audio_16k), sampling_rate=SAMPLE_RATE)
        out: list[str] = []
        for cue in request.cues:
            a = max(0, int((cue.start - PAD) * SAMPLE_RATE))
            b = min(len(audio), int((cue.end + PAD) * SAMPLE_RATE))
            cues, _dropped = self._backend().transcribe_array(audio[a:b])
            out.append(" ".join(c.text.strip() for c in cues).strip())
        return out
