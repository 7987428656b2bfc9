"""espeak-ng formant synthesis: a voice for almost every market language, robotic.

It is the last link of every fallback chain, so a market whose language has no natural
voice here still gets a dub, and QC labels that dub "low quality" so nobody ships it
unheard. Japanese and Mandarin are left out: espeak-ng reads them badly enough to be
unintelligible (it spells kanji and hanzi out as "Chinese letter").

Engine: the espeak-ng library inside piper-tts, else a Debian ``espeak-ng`` binary
(``espeak_lib.engine``); neither present is a clear BackendUnavailable.
"""

from __future__ import annotations

import numpy as np

from locpipe.backends.tts import espeak_lib
from locpipe.backends.tts.base import TTSBackend, VoiceInfo, register
from locpipe.versions import dist_version

#: market languages espeak-ng speaks acceptably: voice name (BCP-47) -> espeak-ng voice
ESPEAK_VOICES = {
    "en-US": "en-us", "en-GB": "en-gb", "es": "es", "es-419": "es-419", "pt": "pt", "pt-BR": "pt-br",
    "id": "id", "ms": "ms", "vi": "vi", "th": "th", "ar": "ar", "hi": "hi", "fr": "fr", "de": "de",
    "it": "it", "ru": "ru", "tr": "tr", "ko": "ko",
}
#: espeak-ng's output rate (the Debian binary reports its own in the WAV header)
SAMPLE_RATE = 22050


@register("espeak-ng")
class EspeakTTS(TTSBackend):
    can_clone = False
    quality = "low"

    @property
    def version(self) -> str:
        return f"espeak-ng (piper-tts=={dist_version('piper-tts')})"

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return {name: VoiceInfo(name, name, SAMPLE_RATE, quality="low", licence="GPL-3.0")
                for name in ESPEAK_VOICES}

    def unavailable_reason(self, language: str) -> str | None:
        reason = super().unavailable_reason(language)
        if reason:
            return reason
        try:
            espeak_lib.engine()
        except Exception as exc:  # any failure to load the engine means "not here", said plainly
            return f"espeak-ng: {exc}"
        return None

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        engine = espeak_lib.engine()
        audio = engine.synthesize(text, ESPEAK_VOICES[voice.name])
        if engine.sample_rate != voice.sample_rate:
            # a Debian binary built for another rate: resample linearly (robotic speech either way)
            n = int(round(audio.size * voice.sample_rate / engine.sample_rate))
            audio = np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)
        return audio
