"""Coqui TTS (``coqui-tts`` / ``TTS`` package), e.g. XTTS v2 for cross-language voice cloning.

XTTS can speak a market language in the original actor's voice from a few seconds of their
clean vocals. Its weights are not on any package registry, and the library downloads models
by name at run time, which a production farm must not depend on. So this adapter only ever
loads a model from a local folder (``config.json`` + weights, e.g. ``model.pth``,
``vocab.json``, ``speakers_xtts.pth``), named by ``LOCPIPE_COQUI_MODEL`` or the constructor;
without the package or the folder every call fails saying what to install and configure.

Voice names are ``<speaker>@<language>`` for the model's built-in speakers and
``clone-<hash>@<language>`` for voices registered with ``clone_voice``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import threading
from pathlib import Path

import numpy as np

from locpipe.backends.tts.base import TTSBackend, VoiceInfo, register
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

MODEL_ENV = "LOCPIPE_COQUI_MODEL"
#: XTTS v2's languages (used when the loaded model does not list its own)
XTTS_LANGUAGES = ("en", "es", "fr", "de", "it", "pt", "pl", "tr", "ru", "nl", "cs", "ar", "zh-cn", "hu", "ko",
                  "ja", "hi")
INSTALL_HINT = (f"install the Coqui TTS package (pip install coqui-tts; it pulls PyTorch) and put a local model "
                f"folder (config.json + weights, e.g. XTTS v2) in {MODEL_ENV}; models are never downloaded at run time")


def _dist_version(*names: str) -> str:
    for name in names:
        try:
            return f"{name}=={importlib.metadata.version(name)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    return "coqui-tts==missing"


def coqui_language(tag: str) -> str:
    """Market tag -> XTTS language code ("pt-BR" -> "pt", "zh-Hans" -> "zh-cn")."""
    base = tag.replace("_", "-").split("-")[0].lower()
    return "zh-cn" if base == "zh" else base


@register("coqui-xtts")
class CoquiTTS(TTSBackend):
    can_clone = True
    quality = "natural"

    def __init__(self, model_dir: Path | str | None = None) -> None:
        configured = model_dir or os.environ.get(MODEL_ENV, "")
        self.model_dir = Path(configured) if configured else None
        self._engine = None
        self._clones: dict[str, VoiceInfo] = {}
        self._references: dict[str, Path] = {}
        self._lock = threading.Lock()

    @property
    def version(self) -> str:
        folder = self.model_dir.name if self.model_dir else "no-model"
        return f"{_dist_version('coqui-tts', 'TTS')};model={folder}"

    # ------------------------------------------------------------------ engine

    def _api(self):
        """The ``TTS.api.TTS`` class, or a clear error naming what to install."""
        try:
            from TTS.api import TTS
        except ImportError as exc:
            raise BackendUnavailable(f"TTS backend 'coqui-xtts' is not installed ({exc}): {INSTALL_HINT}") from None
        return TTS

    def _config_path(self) -> Path:
        if self.model_dir is None:
            raise BackendUnavailable(f"TTS backend 'coqui-xtts' has no model: {MODEL_ENV} is not set; {INSTALL_HINT}")
        config = self.model_dir / "config.json"
        if not config.is_file():
            raise BackendUnavailable(f"{config}: Coqui model folder has no config.json ({MODEL_ENV}={self.model_dir})")
        return config

    def engine(self):
        """The loaded Coqui model (loaded once, on first use, from the local folder only)."""
        with self._lock:
            if self._engine is None:
                config = self._config_path()
                api = self._api()
                engine = api(model_path=str(self.model_dir), config_path=str(config), progress_bar=False)
                if hasattr(engine, "to"):
                    engine = engine.to("cpu") or engine
                self._engine = engine
                log.info("loaded Coqui model from %s (%d Hz)", self.model_dir, self._rate(engine))
            return self._engine

    @staticmethod
    def _rate(engine) -> int:
        return int(engine.synthesizer.output_sample_rate)

    def _languages(self, engine) -> list[str]:
        return list(getattr(engine, "languages", None) or XTTS_LANGUAGES)

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        engine = self.engine()
        rate = self._rate(engine)
        speakers = list(getattr(engine, "speakers", None) or [])
        table = {f"{spk}@{lang}": VoiceInfo(f"{spk}@{lang}", lang, rate, quality="natural")
                 for spk in speakers for lang in self._languages(engine)}
        table.update(self._clones)
        return table

    def unavailable_reason(self, language: str) -> str | None:
        try:
            self._config_path()
            self._api()
        except BackendUnavailable as exc:
            return str(exc)
        return super().unavailable_reason(language)

    def clone_voice(self, reference: Path, language: str) -> str:
        """Register ``reference`` (clean vocals of the original actor) as a voice for ``language``."""
        reference = Path(reference)
        if not reference.is_file():
            raise BackendUnavailable(f"{reference}: reference clip for voice cloning not found")
        engine = self.engine()
        lang = coqui_language(language)
        if lang not in self._languages(engine):
            raise BackendUnavailable(f"Coqui model in {self.model_dir} does not speak {language}; "
                                     f"it speaks {', '.join(self._languages(engine))}")
        digest = hashlib.sha256(reference.read_bytes()).hexdigest()[:10]
        name = f"clone-{digest}@{lang}"
        self._clones[name] = VoiceInfo(name, language, self._rate(engine), quality="natural")
        self._references[name] = reference
        return name

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        engine = self.engine()
        speaker, _, lang = voice.name.rpartition("@")
        kwargs: dict = {"text": text, "language": coqui_language(lang or voice.language)}
        if voice.name in self._references:
            kwargs["speaker_wav"] = str(self._references[voice.name])
        else:
            kwargs["speaker"] = speaker
        return np.asarray(engine.tts(**kwargs), dtype=np.float32)
