"""Synthesize: speak every translated cue and place it in its time slot on one dub track.

A dubbed line must stay with the picture and never talk over the next line. Each cue owns
the time from its start to just before the next cue (``LINE_GAP``); a line may start a
little early (``MAX_BORROW``) when the gap before it is free. Speech that is still too long
is sped up (rubberband, pitch kept) up to the market's ``max_stretch``; past that it is cut
with a short fade and marked "overflow" for QC, never overlapped. Lines are never slowed
down: a short line simply ends early.

The slot/fit arithmetic is pure (``fit_line``, ``plan_lines``) and tested directly; the
synthesis, stretching and WAV writing around it are thin.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import tempfile
import time
import wave
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from locpipe.artifacts import DubLine, DubTrack, Translation
from locpipe.backends.tts.base import TTSBackend, UnspeakableText
from locpipe.backends.tts.pronounce import spoken_text
from locpipe.backends.tts.select import VoiceChoice
from locpipe.config import Market
from locpipe.errors import BackendUnavailable, StageError
from locpipe.localize.condense import Rewrite, ShortenFn, char_budget
from locpipe.localize.voices import VoiceStyle
from locpipe.media.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)

#: silence kept between one line's end and the next cue's start (seconds)
LINE_GAP = 0.05
#: how much earlier than its cue a line may start when the gap before it is free (seconds)
MAX_BORROW = 0.2
#: slowest tempo ever applied; slowing down is off (MIN_TEMPO_DEFAULT) but never below this
MIN_TEMPO = 0.9
MIN_TEMPO_DEFAULT = 1.0
#: fade applied where an overflowing line is cut (seconds); shorter if the slot is tiny
OVERFLOW_FADE = 0.08
#: fade at both ends of every placed line, against clicks left by trimming (seconds)
EDGE_FADE = 0.005
#: below this level (dBFS, relative to full scale) leading/trailing audio counts as silence
SILENCE_DB = -45.0
#: lines are written 1 dB under full scale so stretching and summing do not clip
LINE_PEAK = 10 ** (-1 / 20)
#: rounding slack when comparing durations (seconds): below one sample at 22.05 kHz
EPS = 1e-6


# --------------------------------------------------------------------------- pure arithmetic


@dataclass(frozen=True)
class Fit:
    """Where one line goes: the slot it may use and how its speech is fitted into it."""

    slot_start: float
    slot_end: float
    speech_seconds: float
    #: tempo factor (>1 faster); 1.0 when unchanged
    stretch: float
    placed_start: float
    placed_end: float
    outcome: str

    @property
    def needs_cut(self) -> bool:
        return self.outcome == "overflow"


def slot_end(next_start: float | None, episode_duration: float) -> float:
    """End of a line's slot: LINE_GAP before the next spoken cue starts, else the episode end."""
    if next_start is None:
        return max(0.0, episode_duration)
    return max(0.0, min(next_start - LINE_GAP, episode_duration))


def fit_line(speech: float, cue_start: float, slot_end: float, prev_end: float | None,
             max_stretch: float, min_tempo: float = MIN_TEMPO_DEFAULT) -> Fit:
    """Fit ``speech`` seconds of audio for a cue starting at ``cue_start``.

    The line may start up to MAX_BORROW before its cue, but not before 0 nor within
    LINE_GAP of the previous placed line (``prev_end``), so borrowing never causes overlap.
    It starts as late as possible (at the cue) while still fitting, moving earlier only as
    far as it needs; then it is sped up (at most ``max_stretch``); then cut ("overflow").
    ``min_tempo`` below 1 would allow slowing short lines, never below MIN_TEMPO; with the
    default 1.0 lines are never slowed.
    """
    if max_stretch < 1.0:
        raise ValueError(f"max_stretch must be >= 1.0, got {max_stretch}")
    if not MIN_TEMPO <= min_tempo <= 1.0:
        raise ValueError(f"min_tempo must be in [{MIN_TEMPO}, 1.0], got {min_tempo}")
    earliest = max(0.0, cue_start - MAX_BORROW)
    if prev_end is not None:
        earliest = max(earliest, prev_end + LINE_GAP)
    start_at_cue = min(max(cue_start, earliest), slot_end)
    earliest = min(earliest, start_at_cue)
    available = max(0.0, slot_end - earliest)

    def fit(start: float, length: float, stretch: float, outcome: str) -> Fit:
        return Fit(earliest, slot_end, speech, stretch, start, start + length, outcome)

    room = slot_end - start_at_cue
    if speech <= room + EPS:
        # fits from the cue; an optional slow-down fills at most the room to the slot end
        tempo = max(min_tempo, speech / room) if min_tempo < 1.0 and room > EPS else 1.0
        return fit(start_at_cue, min(speech / tempo, room), tempo, "fit")
    if speech <= available + EPS:
        # fits when it borrows from the gap before: start just early enough
        return fit(slot_end - speech, speech, 1.0, "fit")
    if available <= 0.0:
        return fit(earliest, 0.0, max_stretch, "overflow")
    tempo = speech / available
    if tempo <= max_stretch + EPS:
        return fit(earliest, available, min(tempo, max_stretch), "stretched")
    return fit(earliest, available, max_stretch, "overflow")


def plan_lines(cues: list[tuple[float, float]], episode_duration: float, max_stretch: float) -> list[Fit]:
    """Fit (cue_start, speech_seconds) pairs sorted by start; each sees where the last one ended.

    A speech length of 0 (nothing to say) is "skipped": it holds no slot, so the line before
    it may run on to the next spoken cue.
    """
    fits: list[Fit] = []
    prev_end: float | None = None
    for i, (start, speech) in enumerate(cues):
        next_start = next((s for s, sp in cues[i + 1:] if sp > 0.0), None)
        end = slot_end(next_start, episode_duration)
        if speech <= 0.0:
            at = min(max(0.0, start), episode_duration)
            fits.append(Fit(at, at, 0.0, 1.0, at, at, "skipped"))
            continue
        fit = fit_line(speech, start, end, prev_end, max_stretch)
        fits.append(fit)
        prev_end = fit.placed_end
    return fits


# --------------------------------------------------------------------------- pure signal helpers


def trim_silence(audio: np.ndarray, sample_rate: int, threshold_db: float = SILENCE_DB,
                 keep: float = 0.01) -> np.ndarray:
    """Cut leading and trailing silence (TTS pads both ends), keeping ``keep`` seconds of margin.

    The level is judged on 10 ms windows of peak amplitude, so one quiet consonant sample
    inside a word is never cut.
    """
    if audio.size == 0:
        return audio
    win = max(1, int(0.01 * sample_rate))
    frames = int(np.ceil(audio.size / win))
    padded = np.zeros(frames * win, dtype=np.float32)
    padded[: audio.size] = np.abs(audio)
    loud = np.flatnonzero(padded.reshape(frames, win).max(axis=1) > 10 ** (threshold_db / 20))
    if loud.size == 0:
        return audio[:0]
    margin = int(keep * sample_rate)
    first = max(0, loud[0] * win - margin)
    last = min(audio.size, (loud[-1] + 1) * win + margin)
    return audio[first:last]


def fade_edges(audio: np.ndarray, sample_rate: int, fade_in: float, fade_out: float) -> np.ndarray:
    """Linear fade-in/out (seconds), each at most half the clip."""
    out = audio.astype(np.float32, copy=True)
    for seconds, tail in ((fade_in, False), (fade_out, True)):
        n = min(int(seconds * sample_rate), out.size // 2)
        if n <= 0:
            continue
        ramp = np.linspace(0.0, 1.0, n, endpoint=False, dtype=np.float32)
        if tail:
            out[-n:] *= ramp[::-1]
        else:
            out[:n] *= ramp
    return out


def fit_audio(audio: np.ndarray, sample_rate: int, fit: Fit) -> np.ndarray:
    """Cut already-stretched audio to the placed length; fade where it was cut.

    Also absorbs the few samples rubberband's output may differ from the requested tempo.
    """
    target = max(0, int(round((fit.placed_end - fit.placed_start) * sample_rate)))
    cut = audio.size - target > int(0.02 * sample_rate)
    clip = audio[:target]
    return fade_edges(clip, sample_rate, EDGE_FADE, OVERFLOW_FADE if cut or fit.needs_cut else EDGE_FADE)


# --------------------------------------------------------------------------- I/O


def stretch_audio(audio: np.ndarray, sample_rate: int, tempo: float, work_dir: Path) -> np.ndarray:
    """Change tempo with ffmpeg's rubberband filter, keeping pitch (raw float32 in and out)."""
    if abs(tempo - 1.0) < 1e-4:
        return audio
    src, dst = work_dir / "line.f32", work_dir / "line.stretched.f32"
    audio.astype("<f4").tofile(src)
    run_ffmpeg(["-f", "f32le", "-ar", str(sample_rate), "-ac", "1", "-i", str(src),
                "-af", f"rubberband=tempo={tempo:.6f}", "-f", "f32le", "-ar", str(sample_rate), "-ac", "1", str(dst)],
               what=f"time-stretch x{tempo:.3f}")
    return np.fromfile(dst, dtype="<f4")


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono 16-bit PCM WAV, written beside and renamed so a crash never leaves half a file."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm.tobytes())
    tmp.replace(path)


def _voice_for(market: Market, tts: TTSBackend, language: str, spec: str | None = None) -> str:
    """The voice name (``spec``, else the market's), checked against the backend and the language.

    A market without a voice gets the backend's first voice for the language.
    """
    spec = spec or market.config.dub.voice
    if spec is None:
        voices = tts.voices_for(language)
        if not voices:
            raise StageError("synthesize", f"TTS backend {tts.name!r} has no voice for {language}")
        spec = f"{tts.name}:{voices[0].name}"
    backend_name, _, voice = spec.partition(":")
    if backend_name != tts.name:
        raise StageError("synthesize", f"market {market.code} wants voice {spec!r} "
                                       f"but the TTS backend given is {tts.name!r}")
    info = tts.voice_info(voice)
    if info.base_language != language.split("-")[0].lower():
        raise StageError("synthesize", f"voice {spec!r} speaks {info.language}, "
                                       f"the translation is {language}")
    return voice


def silent_dub(translation: Translation, episode_duration: float, out_dir: Path, choice: VoiceChoice) -> DubTrack:
    """No voice speaks the language here: a silent ``dub.wav`` and every line skipped with the reason.

    The pipeline then mixes the original audio as if the market had no dub, and QC shows why.
    """
    sr = 24000
    reason = "; ".join(choice.notes) or f"no voice for {translation.language}"
    lines = [DubLine(cue_index=c.index, text=c.text, slot_start=round(c.start, 3), slot_end=round(c.start, 3),
                     speech_seconds=0.0, stretch=1.0, placed_start=round(c.start, 3), placed_end=round(c.start, 3),
                     outcome="skipped", note=f"not dubbed: {reason}" if c.text.strip() else "")
             for c in sorted(translation.cues, key=lambda c: c.start)]
    result = DubTrack(language=translation.language, voice="", backend="none", sample_rate=sr, lines=lines,
                      quality="none", notes=list(choice.notes))
    write_wav(out_dir / result.wav, np.zeros(max(1, int(round(episode_duration * sr))), dtype=np.float32), sr)
    return result


@dataclass
class ClipCache:
    """Every spoken line's clip, kept by what makes its sound, so a re-dub speaks only new lines.

    The dub stage is one artifact for the whole episode: a corrected line changes its key
    and it is made again. Without this cache every line would be spoken again too; with
    it only lines whose text, voice or cue timing changed reach the TTS (a reviewer's edit
    of three lines costs three lines). The key: the text the voice is given, the voice
    (with its pitch and engine parameters), the output sample rate, the engine's version
    and the cue's own start and end (not its slot: a neighbour's edit must not invalidate
    it; the fit to the slot is redone from the clip, which is cheap). ``hits``/``misses``
    list the cue indexes of this dub, for the manifest.
    """

    root: Path
    backend_version: str
    #: the shorteners' versions (an LLM's rewrite of an overflowing line is kept too: asking
    #: the model again costs seconds and may word it differently)
    shorten_version: str = ""
    hits: list[int] = field(default_factory=list)
    misses: list[int] = field(default_factory=list)

    def rewrite_key(self, source: str, text: str, budget: int) -> str:
        payload = json.dumps(["rewrite", source, text, budget, self.shorten_version], ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def load_rewrite(self, key: str) -> Rewrite | None:
        path = self.root / key[:2] / f"{key}.rewrite.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return Rewrite(data["text"], data["by"])
        except (OSError, ValueError, KeyError):
            return None

    def save_rewrite(self, key: str, rewrite: Rewrite) -> None:
        from locpipe.core.store import atomic_write_text

        atomic_write_text(self.root / key[:2] / f"{key}.rewrite.json",
                          json.dumps({"text": rewrite.text, "by": rewrite.by}, ensure_ascii=False))

    def key(self, text: str, voice: str, sample_rate: int, start: float, end: float) -> str:
        payload = json.dumps([text, voice, sample_rate, self.backend_version, round(start, 3), round(end, 3)],
                             ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:24]

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self._path(key).exists()

    def load(self, key: str) -> tuple[np.ndarray, str] | None:
        path = self._path(key)
        if not path.exists():
            return None
        try:
            with np.load(path) as data:
                return data["audio"].astype(np.float32), str(data["voice"])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable clip (%s); speaking the line again", path, exc)
            return None

    def save(self, key: str, audio: np.ndarray, voice: str) -> None:
        from locpipe.core.store import atomic_write_bytes

        buf = io.BytesIO()
        np.savez(buf, audio=audio.astype(np.float32), voice=np.array(voice))
        atomic_write_bytes(self._path(key), buf.getvalue())


def _voice_label(index: int, tts: TTSBackend, voice: str, speakers: dict[int, str] | None,
                 voices: dict[str, VoiceStyle] | None, backends: dict) -> str:
    """The voice a cue is meant to be spoken in, with its engine's version (the clip key's voice)."""
    style = (voices or {}).get((speakers or {}).get(index) or "")
    if style is None:
        return f"{tts.name}:{voice}"
    engine = backends.get(style.backend)
    return f"{style.describe()} {getattr(engine, 'version', '')}".strip()


def _clip_key(clips: ClipCache, said: str, cue, tts: TTSBackend, voice: str, sr: int,
              speakers: dict[int, str] | None, voices: dict[str, VoiceStyle] | None, backends: dict) -> str:
    """The clip cache key of ``cue`` spoken as ``said`` in its cast voice at ``sr`` Hz."""
    return clips.key(said, _voice_label(cue.index, tts, voice, speakers, voices, backends), sr, cue.start, cue.end)


def _speak_cached(text: str, cue, tts: TTSBackend, voice: str, sr: int, speakers: dict[int, str] | None,
                  voices: dict[str, VoiceStyle] | None, backends: dict,
                  clips: ClipCache | None) -> tuple[np.ndarray, str, float]:
    """(trimmed clip, voice that spoke it, seconds spent in the TTS) for one cue: from the clip
    cache when the same text was spoken in the same voice for the same cue times."""
    key = _clip_key(clips, text, cue, tts, voice, sr, speakers, voices, backends) if clips else ""
    found = clips.load(key) if clips else None
    if found is not None:
        clips.hits.append(cue.index)  # type: ignore[union-attr]
        return found[0], found[1], 0.0
    t0 = time.perf_counter()
    audio, spoken_by = _speak_cue(text, cue.index, tts, voice, sr, speakers, voices, backends)
    clip = trim_silence(audio, sr) * np.float32(LINE_PEAK)
    if clips:
        clips.misses.append(cue.index)
        clips.save(key, clip, spoken_by)
    return clip, spoken_by, time.perf_counter() - t0


def _shortened(shorten: ShortenFn, cue, budget: int, clips: ClipCache | None) -> Rewrite | None:
    """A shorter rendering of an overflowing line, kept in the clip cache with the clip."""
    key = clips.rewrite_key(cue.source_text, cue.text, budget) if clips else ""
    found = clips.load_rewrite(key) if clips else None
    if found is not None:
        return found
    rewrite = shorten(cue.index, cue.source_text, cue.text, budget)
    if rewrite is not None and clips:
        clips.save_rewrite(key, rewrite)
    return rewrite


def _speak_ahead(cues, tts: TTSBackend, voice: str, sr: int, speakers: dict[int, str] | None,
                 voices: dict[str, VoiceStyle] | None, backends: dict, lexicon: dict[str, str] | None,
                 language: str, clips: ClipCache | None) -> None:
    """Hand every line the loop below will speak (not in the clip cache) to its engine at once.

    Engines that speak several lines at a time (Kokoro on 2+ cores: ``TTSBackend.prefetch``)
    then use every core; the loop's calls return their audio. Never fails the dub.
    """
    from locpipe.localize.voices import speak_ahead

    try:
        todo = []
        for cue in cues:
            said = spoken_text(cue.text, lexicon or {}, language) if cue.text.strip() else ""
            cached = bool(clips and said and clips.has(_clip_key(clips, said, cue, tts, voice, sr, speakers, voices,
                                                                  backends)))
            if said and not cached:
                todo.append(((voices or {}).get((speakers or {}).get(cue.index) or ""), said))
        speak_ahead(todo, tts, voice, backends)
    except Exception as exc:  # noqa: BLE001 - speaking ahead only saves time; the loop speaks what is missing
        log.warning("lines not spoken ahead (%s); speaking them one by one", exc)


def _speak_cue(text: str, index: int, tts: TTSBackend, voice: str, sr: int, speakers: dict[int, str] | None,
               voices: dict[str, VoiceStyle] | None, backends: dict) -> tuple[np.ndarray, str]:
    """Voice selection for one cue: its speaker's cast voice (locpipe.localize.voices), else the market's.

    Returns the audio at ``sr`` and the voice that spoke it. A cast voice that cannot speak
    here falls back to the market's voice with a warning: a casting slip never costs a line.
    """
    speaker = (speakers or {}).get(index)
    style = (voices or {}).get(speaker or "")
    if style is None:
        return tts.synthesize(text, voice), f"{tts.name}:{voice}"
    from locpipe.localize.voices import speak

    backends.setdefault(tts.name, tts)
    try:
        return speak(style, text, sr, backends), style.describe()
    except BackendUnavailable as exc:
        log.warning("cue %d: voice %s for %s unavailable (%s); using %s:%s", index, style.describe(), speaker, exc,
                    tts.name, voice)
        return tts.synthesize(text, voice), f"{tts.name}:{voice}"


def synthesize_dub(translation: Translation, market: Market, episode_duration: float, out_dir: Path,
                   tts: TTSBackend | None, choice: VoiceChoice | None = None, *,
                   speakers: dict[int, str] | None = None, voices: dict[str, VoiceStyle] | None = None,
                   shorten: ShortenFn | None = None,
                   make_backend: Callable[[str], TTSBackend] | None = None,
                   lexicon: dict[str, str] | None = None, cast_notes: list[str] | None = None,
                   clips: ClipCache | None = None) -> DubTrack:
    """Speak every translated cue, fit each into its slot, write ``dub.wav`` for the whole episode.

    ``choice`` (from locpipe.backends.tts.select.choose_voice) names the voice and carries the
    quality label and fallback notes into the DubTrack for QC; without it the market's
    ``dub.voice`` is used with ``tts``. ``speakers`` (cue index -> speaker label) and
    ``voices`` (speaker label -> VoiceStyle) give each character its own voice; cues of
    speakers without one use the market's voice. ``shorten`` (locpipe.localize.condense) gives
    a shorter rendering of a line that overflows its slot even at the stretch cap; the line
    is spoken again from it and re-fitted (subtitles keep the full translation).
    ``make_backend`` gives the engines of the characters' voices (the worker's loaded ones).
    ``lexicon`` (written name -> spoken form, ``locpipe.localize.voices.bible_lexicon``) and,
    for English, automatic pinyin respellings change only what the voice is given
    (``locpipe.backends.tts.pronounce.spoken_text``); the DubLine keeps the written text.
    ``cast_notes`` (shared or pitch-varied voices of the series cast) go to QC.
    ``clips`` (:class:`ClipCache`) keeps every spoken line: only lines not spoken before
    (new text, voice or cue times) reach the TTS; the DubTrack's ``line_cache`` lists them.
    """
    if choice is not None and (choice.backend is None or tts is None):
        return silent_dub(translation, episode_duration, out_dir, choice)
    voice = _voice_for(market, tts, translation.language, choice.spec if choice else None)
    sr = tts.sample_rate(voice)
    cues = sorted(translation.cues, key=lambda c: c.start)
    speech: list[np.ndarray] = []
    notes: dict[int, str] = {}
    spoken_by: dict[int, str] = {}
    backends: dict = {s.backend: make_backend(s.backend) for s in (voices or {}).values()} if make_backend else {}
    ahead_started = time.perf_counter()
    _speak_ahead(cues, tts, voice, sr, speakers, voices, backends, lexicon, translation.language, clips)
    synth_seconds = time.perf_counter() - ahead_started  # the loop's calls then add what was not spoken ahead
    for cue in cues:
        if not cue.text.strip():
            speech.append(np.zeros(0, dtype=np.float32))
            continue
        try:
            said = spoken_text(cue.text, lexicon or {}, translation.language)
            clip, spoken_by[cue.index], seconds = _speak_cached(said, cue, tts, voice, sr, speakers, voices, backends,
                                                                clips)
        except UnspeakableText as exc:  # one bad line must not cost the episode its dub: flag it
            log.warning("cue %d not dubbed: %s", cue.index, exc)
            notes[cue.index] = str(exc)
            speech.append(np.zeros(0, dtype=np.float32))
            continue
        synth_seconds += seconds
        speech.append(clip)
    spoken = sum(a.size for a in speech) / sr
    reused = f" ({len(clips.hits)} from the clip cache, {len(clips.misses)} spoken now)" if clips else ""
    log.info("synthesized %d lines%s, %.1f s of speech, %.1f s in the TTS with %s:%s", sum(a.size > 0 for a in speech),
             reused, spoken, synth_seconds, tts.name, voice)

    max_stretch = market.config.dub.max_stretch
    fits = plan_lines([(c.start, a.size / sr) for c, a in zip(cues, speech)], episode_duration, max_stretch)
    rewrites: dict[int, Rewrite] = {}
    if shorten is not None:
        for i in [i for i, f in enumerate(fits) if f.outcome == "overflow" and speech[i].size]:
            cue, fit = cues[i], fits[i]
            budget = char_budget(cue.text, fit.speech_seconds, fit.slot_end - fit.slot_start, max_stretch)
            rewrite = _shortened(shorten, cue, budget, clips)
            if rewrite is None:
                continue
            try:
                said = spoken_text(rewrite.text, lexicon or {}, translation.language)
                speech[i], spoken_by[cue.index], _s = _speak_cached(said, cue, tts, voice, sr, speakers, voices,
                                                                    backends, clips)
            except UnspeakableText as exc:
                log.warning("cue %d: rewrite %r not spoken (%s); keeping the overflow", cue.index, rewrite.text, exc)
                continue
            rewrites[cue.index] = rewrite
            log.info("cue %d rewritten by %s to fit %.2f s: %r -> %r", cue.index, rewrite.by,
                     fit.slot_end - fit.slot_start, cue.text, rewrite.text)
        if rewrites:
            fits = plan_lines([(c.start, a.size / sr) for c, a in zip(cues, speech)], episode_duration, max_stretch)
    track = np.zeros(max(1, int(round(episode_duration * sr))), dtype=np.float32)
    lines: list[DubLine] = []
    with tempfile.TemporaryDirectory(prefix="stretch-", dir=out_dir) as tmp:
        for cue, audio, fit in zip(cues, speech, fits, strict=True):
            if fit.outcome != "skipped" and fit.placed_end > fit.placed_start:
                placed = fit_audio(stretch_audio(audio, sr, fit.stretch, Path(tmp)), sr, fit)
                at = int(round(fit.placed_start * sr))
                n = min(placed.size, track.size - at)
                track[at:at + n] += placed[:n]
            if fit.outcome == "overflow":
                log.warning("cue %d: %.2f s of speech does not fit %.2f s even at x%.2f; cut",
                            cue.index, fit.speech_seconds, fit.slot_end - fit.slot_start, fit.stretch)
            rewrite = rewrites.get(cue.index)
            lines.append(DubLine(cue_index=cue.index, text=rewrite.text if rewrite else cue.text,
                                 rewritten_from=cue.text if rewrite else "", rewritten_by=rewrite.by if rewrite else "",
                                 slot_start=round(fit.slot_start, 3),
                                 slot_end=round(fit.slot_end, 3), speech_seconds=round(fit.speech_seconds, 3),
                                 stretch=round(fit.stretch, 4), placed_start=round(fit.placed_start, 3),
                                 placed_end=round(fit.placed_end, 3), outcome=fit.outcome,  # type: ignore[arg-type]
                                 note=notes.get(cue.index, ""), speaker=(speakers or {}).get(cue.index),
                                 voice=spoken_by.get(cue.index, "")))
    result = DubTrack(language=translation.language, voice=voice, backend=tts.name, sample_rate=sr, lines=lines,
                      quality=choice.quality if choice else tts.voice_quality(voice),
                      notes=list(choice.notes) if choice else [],
                      voices={label: style.describe() for label, style in (voices or {}).items()},
                      cast_notes=list(cast_notes or []),
                      line_cache={"hits": sorted(set(clips.hits)),
                                  "misses": sorted(set(clips.misses))} if clips else {})
    write_wav(out_dir / result.wav, track, sr)
    return result
