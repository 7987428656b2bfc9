"""Speech-synthesis backend interface, registry and voice specs.

A backend turns one line of target-language text into mono float32 audio with one of its
voices. Backends live in sibling modules and register under a name (like pysubs2's format
registry); markets name a voice as ``"<backend>:<voice>"`` (``"piper:en_US-joe-medium"``).

Input is checked here, once for every backend, because a TTS engine given the wrong input
does not fail: an English espeak front end reads Chinese characters aloud as "Chinese
letter", and empty text gives a click. Both must be errors that name the line.
"""

from __future__ import annotations

import functools
import threading
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locpipe.backends.registry import Registry
from locpipe.errors import BackendUnavailable, LocpipeError

#: quality labels, best first; QC flags "low" (and "none": no voice at all)
QUALITY_LABELS = ("natural", "accented", "low")


class UnspeakableText(LocpipeError, ValueError):
    """Text a voice cannot say: empty, or written in a script the voice's language does not use."""


@dataclass(frozen=True)
class VoiceInfo:
    """One voice a backend offers."""

    name: str
    #: BCP-47 tag of what the voice speaks, e.g. "en-US"
    language: str
    sample_rate: int
    gender: str | None = None
    quality: str = ""
    licence: str = ""
    #: how a listener names the accent ("American", "British", "Japanese" for an accented pack)
    accent: str = ""
    #: the engine's own quality grade of this voice (Kokoro: "A" ... "F"), "" when none
    grade: str = ""
    #: "adult" or "senior": casting keeps old-sounding voices for old characters
    age: str = "adult"

    @property
    def base_language(self) -> str:
        """ISO 639-1 part ("en" for "en-US"), what markets and scripts key on."""
        return self.language.replace("_", "-").split("-")[0].lower()


class TTSBackend(ABC):
    """One speech-synthesis engine. Instances may hold loaded models: create once, reuse."""

    name: str = ""
    #: whether the backend can speak in a voice cloned from a reference clip
    can_clone: bool = False
    #: what a listener hears, for QC: "natural", "accented" (a voice speaking a language it
    #: was not trained on) or "low" (robotic fallback); see QUALITY_LABELS
    quality: str = "natural"

    #: how many lines the engine speaks at once in ``prefetch`` (1: one after another, no
    #: prefetching); engines whose single run cannot use every core (Kokoro's recurrent
    #: layers keep one core busy) set it from ``configure_threads``
    parallel_lines: int = 1

    @property
    @abstractmethod
    def version(self) -> str:
        """Library version plus voice-package version, for cache keys and the manifest."""

    def configure_threads(self, threads: int | None) -> None:
        """The worker's CPU share (cores // --jobs), given before the first synthesis; default: ignored."""
        return None

    def prefetch(self, requests: Iterable[tuple[str, str, dict[str, float] | None]]) -> int:
        """Speak (text, voice, params) requests ahead, ``parallel_lines`` at a time; returns how many.

        The dub stage hands over every line it will ask for; each later ``synthesize`` call
        with the same arguments returns the audio at once (and forgets it), so the stage's
        line-by-line loop keeps its shape while the engine uses every core. A request that
        fails is not kept: its ``synthesize`` call runs again and raises there, for that line.
        """
        todo = list(dict.fromkeys((text, voice, _params_key(params)) for text, voice, params in requests))
        if self.parallel_lines <= 1 or len(todo) < 2:
            return 0

        def speak(item: tuple[str, str, tuple]) -> None:
            text, voice, params = item
            try:
                audio = self._speak_checked(text, voice, dict(params))
            except Exception:  # noqa: BLE001 - said again, and raised for its own line, by synthesize
                return
            ahead.put(item, audio)

        ahead = self._spoken_ahead
        ahead.clear()  # lines asked for ahead but never spoken (a cut episode) are not kept around
        with ThreadPoolExecutor(self.parallel_lines, thread_name_prefix=f"tts-{self.name}") as pool:
            list(pool.map(speak, todo))
        return len(todo)

    @functools.cached_property
    def _spoken_ahead(self) -> SpokenAhead:
        return SpokenAhead()

    @property
    @abstractmethod
    def voices(self) -> dict[str, VoiceInfo]:
        """Voices this backend can speak with here, by name."""

    @property
    def languages(self) -> list[str]:
        """Base language codes the installed voices cover."""
        return sorted({v.base_language for v in self.voices.values()})

    def voices_for(self, language: str) -> list[VoiceInfo]:
        """Voices speaking ``language`` (BCP-47), exact tag matches first, then the same base language.

        Order is stable (by name), so the first entry is a deterministic default for a market.
        """
        tag = language.replace("_", "-").lower()
        base = tag.split("-")[0]
        voices = sorted(self.voices.values(), key=lambda v: v.name)
        exact = [v for v in voices if v.language.replace("_", "-").lower() == tag]
        return exact + [v for v in voices if v.base_language == base and v not in exact]

    def voice_quality(self, voice: str) -> str:
        """Quality label of one voice for QC; backends whose voices differ override this."""
        self.voice_info(voice)
        return self.quality

    def unavailable_reason(self, language: str) -> str | None:
        """Why this backend cannot speak ``language`` here (missing package, no voice), or None.

        Cheap: checks imports and the voice table, never loads a model. The voice selector
        uses it to walk a market's fallback chain.
        """
        try:
            if not self.voices_for(language):
                return f"{self.name}: no voice for {language} (has {', '.join(self.languages) or 'none'})"
        except BackendUnavailable as exc:
            return str(exc)
        return None

    def clone_voice(self, reference: Path, language: str) -> str:
        """Register a voice cloned from ``reference`` (a clean vocal clip); returns its voice name.

        Only backends with ``can_clone`` implement this; the name then works with ``synthesize``.
        """
        raise BackendUnavailable(f"TTS backend {self.name!r} cannot clone voices; use one with can_clone "
                                 f"(coqui-xtts)")

    def voice_info(self, voice: str) -> VoiceInfo:
        """The voice's facts; unknown names fail listing what exists."""
        try:
            return self.voices[voice]
        except KeyError:
            raise BackendUnavailable(
                f"TTS backend {self.name!r} has no voice {voice!r}; available: {sorted(self.voices) or 'none'}"
            ) from None

    def sample_rate(self, voice: str) -> int:
        """Sample rate of the audio ``synthesize`` returns for ``voice`` (voices differ)."""
        return self.voice_info(voice).sample_rate

    def synthesize(self, text: str, voice: str, params: dict[str, float] | None = None) -> np.ndarray:
        """Speak ``text`` with ``voice``: mono float32 in [-1, 1] at ``sample_rate(voice)``.

        Checks the input first (every backend gets the same guarantees), then calls the
        engine. Leading/trailing silence is left in; the dub stage trims it. ``params`` are
        engine speaking parameters (Piper: length_scale, noise_scale, noise_w_scale) that
        make one voice sound like several characters (locpipe.localize.voices); engines without
        such parameters ignore them.
        """
        ready = self._spoken_ahead.take((text, voice, _params_key(params)))
        return ready if ready is not None else self._speak_checked(text, voice, params)

    def _speak_checked(self, text: str, voice: str, params: dict[str, float] | None) -> np.ndarray:
        info = self.voice_info(voice)
        text = check_speakable(text, info)
        raw = self._synthesize_with(text, info, params) if params else self._synthesize(text, info)
        audio = np.asarray(raw, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            raise UnspeakableText(f"{self.name}:{voice} produced no audio for {text!r}")
        return np.clip(audio, -1.0, 1.0)

    @abstractmethod
    def _synthesize(self, text: str, voice: VoiceInfo) -> np.ndarray:
        """Engine call for already-checked text; returns mono audio at ``voice.sample_rate``."""

    def _synthesize_with(self, text: str, voice: VoiceInfo, params: dict[str, float]) -> np.ndarray:
        """Engine call with speaking parameters; the default ignores them (engines without any)."""
        return self._synthesize(text, voice)


class SpokenAhead:
    """Audio of lines spoken ahead by ``TTSBackend.prefetch``, each taken once by ``synthesize``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._audio: dict[tuple, np.ndarray] = {}

    def put(self, key: tuple, audio: np.ndarray) -> None:
        with self._lock:
            self._audio[key] = audio

    def take(self, key: tuple) -> np.ndarray | None:
        with self._lock:
            return self._audio.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._audio.clear()

    def __len__(self) -> int:
        return len(self._audio)


def _params_key(params: dict[str, float] | None) -> tuple:
    return tuple(sorted((params or {}).items()))


# --------------------------------------------------------------------------- input checks

#: Unicode script (first word of a letter's character name) each language is written in.
#: Latin is accepted everywhere: names, brands and "OK" appear in every market's script.
LANGUAGE_SCRIPTS: dict[str, frozenset[str]] = {
    **{lang: frozenset({"LATIN"}) for lang in
       ("en", "es", "pt", "fr", "de", "it", "id", "ms", "vi", "tl", "nl", "pl", "tr", "sw")},
    "zh": frozenset({"LATIN", "CJK"}),
    "ja": frozenset({"LATIN", "CJK", "HIRAGANA", "KATAKANA"}),
    "ko": frozenset({"LATIN", "HANGUL", "CJK"}),
    "ru": frozenset({"LATIN", "CYRILLIC"}),
    "uk": frozenset({"LATIN", "CYRILLIC"}),
    "ar": frozenset({"LATIN", "ARABIC"}),
    "th": frozenset({"LATIN", "THAI"}),
    "hi": frozenset({"LATIN", "DEVANAGARI"}),
    "el": frozenset({"LATIN", "GREEK"}),
    "he": frozenset({"LATIN", "HEBREW"}),
}


def letter_script(ch: str) -> str:
    """Script of one letter from its Unicode name ("LATIN", "CJK", "HANGUL", ...)."""
    name = unicodedata.name(ch, "")
    if name.startswith("CJK") or name.startswith("IDEOGRAPHIC"):
        return "CJK"
    if name in ("FEMININE ORDINAL INDICATOR", "MASCULINE ORDINAL INDICATOR"):  # Spanish/Portuguese "1ª"
        return "LATIN"
    return name.split(" ", 1)[0] if name else "UNKNOWN"


_SCRIPT_LETTERS = {"Lu", "Ll", "Lt", "Lo"}


def foreign_letters(text: str, language: str) -> list[str]:
    """Letters of ``text`` outside the scripts ``language`` is written in (unique, in order).

    Languages missing from LANGUAGE_SCRIPTS are not checked (nothing is reported), so a new
    market never fails here for lack of a table entry.
    """
    allowed = LANGUAGE_SCRIPTS.get(language.replace("_", "-").split("-")[0].lower())
    if allowed is None:
        return []
    found: list[str] = []
    for ch in text:
        # modifier letters (Lm: "ʼ", "ˈ") are script-neutral punctuation in practice
        if unicodedata.category(ch) in _SCRIPT_LETTERS and letter_script(ch) not in allowed and ch not in found:
            found.append(ch)
    return found


def check_speakable(text: str, voice: VoiceInfo) -> str:
    """Return ``text`` NFKC-normalized and stripped, or raise UnspeakableText saying why not.

    NFKC turns full-width Latin and digits ("ＯＫ１") into plain ones that every front end reads.
    """
    if not isinstance(text, str):
        raise UnspeakableText(f"expected text, got {type(text).__name__}")
    stripped = unicodedata.normalize("NFKC", text).strip()
    if not stripped:
        raise UnspeakableText(f"empty text: nothing for voice {voice.name!r} to say")
    if not any(unicodedata.category(ch)[0] in "LN" for ch in stripped):
        raise UnspeakableText(f"no letters or digits in {stripped!r}: nothing for voice {voice.name!r} to say")
    foreign = foreign_letters(stripped, voice.language)
    if foreign:
        scripts = sorted({letter_script(ch) for ch in foreign})
        raise UnspeakableText(
            f"voice {voice.name!r} speaks {voice.language} and cannot read {'/'.join(scripts)} characters "
            f"{''.join(foreign[:10])!r} in {stripped!r}"
        )
    return stripped


# --------------------------------------------------------------------------- registry

TTS: Registry[TTSBackend] = Registry("TTS", tuple(
    f"locpipe.backends.tts.{m}" for m in ("piper_tts", "coqui_tts", "espeak_tts", "kokoro_tts")))
register = TTS.register


def backend_names() -> list[str]:
    """Names of every registered TTS backend (whether or not it can run here)."""
    return TTS.names()


def get_tts_backend(name: str) -> TTSBackend:
    """A new instance of the named backend (models load lazily on first synthesis)."""
    return TTS.create(name)


def parse_voice_spec(spec: str) -> tuple[TTSBackend, str]:
    """``"piper:en_US-joe-medium"`` -> (backend instance, voice name), both checked to exist."""
    backend_name, sep, voice = (spec or "").partition(":")
    if not sep or not backend_name.strip() or not voice.strip():
        raise BackendUnavailable(f"voice spec {spec!r} is not '<backend>:<voice>', e.g. 'piper:en_US-joe-medium'")
    backend = get_tts_backend(backend_name.strip())
    backend.voice_info(voice.strip())
    return backend, voice.strip()
