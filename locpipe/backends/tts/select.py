"""Which voice dubs a market: the market's own choice, then a fallback chain per language.

A market may name a voice (``dub.voice: "kokoro:jf_alpha@es-419"``), a backend or list of
backends (``dub.backend: [coqui-xtts, kokoro]``), or nothing. Candidates are tried in that
order, then the default chain for the market's language (``DEFAULT_CHAINS``, else
``FALLBACK_CHAIN``). A backend that cannot run here (package or model missing) is skipped
and the reason is kept as a note for QC; a voice that the market names explicitly but that
does not exist is a configuration error, never silently replaced. When nothing can speak
the language the choice has no backend: the dub stage then writes no speech and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from locpipe.backends.tts.base import TTSBackend, VoiceInfo, backend_names, get_tts_backend
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

#: default backends per base language, best first: Kokoro's native packs where they exist
#: (English without them, i.e. no npm at set-up: Piper's joe)
DEFAULT_CHAINS: dict[str, tuple[str, ...]] = {
    "en": ("kokoro", "piper", "espeak-ng"),
    "fr": ("kokoro", "espeak-ng"),
    "it": ("kokoro", "espeak-ng"),
    "hi": ("kokoro", "espeak-ng"),
    "ja": ("kokoro",),
    "es": ("kokoro", "espeak-ng"),
    "pt": ("kokoro", "espeak-ng"),
    "id": ("kokoro", "espeak-ng"),
}
#: every other language: the robotic fallback (QC labels it low quality)
FALLBACK_CHAIN: tuple[str, ...] = ("espeak-ng",)


@dataclass(frozen=True)
class VoiceChoice:
    """The voice a market's dub will use, or none, with why earlier candidates were passed over."""

    language: str
    backend: TTSBackend | None = None
    voice: str | None = None
    #: QC label: "natural", "accented", "low", or "none" when there is no voice
    quality: str = "none"
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def spec(self) -> str:
        """``"<backend>:<voice>"``, or ``"none"``."""
        return f"{self.backend.name}:{self.voice}" if self.backend and self.voice else "none"

    def describe(self) -> str:
        """One line for the manifest and logs."""
        if self.backend is None:
            return f"no voice for {self.language}: " + "; ".join(self.notes)
        return f"{self.spec} ({self.quality}) {self.backend.version}"


@dataclass(frozen=True)
class VoiceEntry:
    """One voice of the catalogue, as ``list_voices`` reports it."""

    spec: str
    backend: str
    info: VoiceInfo
    quality: str


def _candidates(voice: str | None, backends: list[str], language: str) -> list[tuple[str, str | None, bool]]:
    """(backend, voice or None, explicit?) in the order they are tried, without repeats."""
    out: list[tuple[str, str | None, bool]] = []
    if voice:
        name, sep, rest = voice.partition(":")
        if sep:
            out.append((name.strip(), rest.strip(), True))
        else:  # a bare voice name belongs to the first configured backend
            if not backends:
                raise BackendUnavailable(f"dub voice {voice!r} names no backend: write '<backend>:<voice>' "
                                         f"or set dub.backend")
            out.append((backends[0], voice.strip(), True))
    base = language.replace("_", "-").split("-")[0].lower()
    for name in [*backends, *DEFAULT_CHAINS.get(base, FALLBACK_CHAIN)]:
        if not any(b == name and v is None for b, v, _ in out):
            out.append((name, None, False))
    return out


def choose_voice(language: str, voice: str | None = None, backends: list[str] | tuple[str, ...] = (),
                 make: Callable[[str], TTSBackend] = get_tts_backend) -> VoiceChoice:
    """The first candidate that can speak ``language`` here (see the module docstring).

    ``make`` builds a backend by name (tests and the pipeline pass one that reuses loaded
    instances). Raises BackendUnavailable for an explicit voice that does not exist or does
    not speak the language: a config mistake must fail loudly, naming what exists.
    """
    notes: list[str] = []
    base = language.replace("_", "-").split("-")[0].lower()
    for name, wanted, explicit in _candidates(voice, list(backends), language):
        try:
            backend = make(name)
        except BackendUnavailable as exc:
            if explicit or name in backends:
                raise
            notes.append(str(exc))
            continue
        reason = backend.unavailable_reason(language)
        if reason:
            notes.append(reason)
            log.info("dub voice for %s: skipping %s: %s", language, name, reason)
            continue
        if wanted is not None:
            info = backend.voice_info(wanted)  # unknown name: error listing what exists
            if info.base_language != base:
                raise BackendUnavailable(f"dub voice {name}:{wanted} speaks {info.language}, the market speaks "
                                         f"{language}; voices for {language}: "
                                         f"{[v.name for v in backend.voices_for(language)] or 'none'}")
        else:
            info = backend.voices_for(language)[0]
        quality = backend.voice_quality(info.name)
        if quality == "low":
            notes.append(f"{name}:{info.name} is a low-quality (robotic) fallback voice")
        return VoiceChoice(language, backend, info.name, quality, tuple(notes))
    notes.append(f"no TTS backend here speaks {language}: the episode keeps its original audio")
    return VoiceChoice(language, None, None, "none", tuple(notes))


def list_voices(language: str | None = None, backends: list[str] | None = None,
                make: Callable[[str], TTSBackend] = get_tts_backend) -> tuple[list[VoiceEntry], list[str]]:
    """The voice catalogue: every voice of the backends that can run here, and why others cannot.

    ``language`` keeps only voices for it (exact tag first). For pickers such as the
    per-character voice map: ``entry.spec`` is what a market or mapping stores.
    """
    entries: list[VoiceEntry] = []
    problems: list[str] = []
    for name in backends or backend_names():
        try:
            backend = make(name)
            infos = backend.voices_for(language) if language else sorted(backend.voices.values(),
                                                                         key=lambda v: v.name)
            reason = backend.unavailable_reason(language or (infos[0].language if infos else "und"))
        except BackendUnavailable as exc:
            problems.append(str(exc))
            continue
        if reason:
            problems.append(reason)
            continue
        entries += [VoiceEntry(f"{name}:{v.name}", name, v, backend.voice_quality(v.name)) for v in infos]
    return entries, problems
