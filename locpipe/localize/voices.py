"""Voices per character: which voice speaks each speaker label, per market, kept with the series.

Viewers notice at once when a character's voice changes between episodes. Speaker labels
(S1, S2, ... from ``locpipe.stages.speakers``, stable across a series) map to characters
of the series bible (set in voices.yaml, else found in each episode's dialogue:
``locpipe.localize.characters``), and characters (or still-unnamed speakers) map to a
voice per market. Both live in ``SERIES_DIR/.locpipe/voices.yaml`` beside the speaker voice prints
(``speakers.json``), so every later episode of the series, whatever ``--out`` it is
rendered into, reuses them. ``locpipe voices SERIES_DIR`` shows and edits the file.

Resolution for one speaker in one market: an explicit entry in voices.yaml, else the
character's ``voice`` in the bible, else an automatic entry recorded earlier, else a new
automatic voice that sounds different from every voice already cast in that market
(other voices of the backend first, then pitch and speaking-rate variants of a voice,
chosen by the speaker's gender: the bible's, else guessed from pitch). New automatic
choices are written back, so the next episode hears the same voice.

With Kokoro's native packs (``locpipe.backends.tts.kokoro_voices``) every character gets a
real voice of their gender: the backend's natural voices of that gender first (the market's
accent, then Kokoro's grade; old-sounding packs kept for old characters), then accented ones,
and only when those run out the same voices at a pitch within +-10%; when even those are
used up voices repeat and ``cast_notes`` says so for QC. A backend with a single voice
(Piper joe, where set-up had no npm) keeps the older recipe: the same model at distinct
pitch (ffmpeg rubberband, formants moved with it) and Piper speaking parameters, a female
character being joe raised ~1.3x.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from locpipe.backends.tts.base import VoiceInfo
from locpipe.core.store import atomic_write_text
from locpipe.errors import BackendUnavailable, ConfigError
from locpipe.localize import characters as chars

log = logging.getLogger(__name__)

STATE_DIRNAME = ".locpipe"
VOICES_FILE = "voices.yaml"

#: pitch ladders for automatic voices: (voice's own gender, wanted gender) -> factors, first
#: preferred. A male voice raised ~1.3x (formants with it) reads as female; a female voice
#: lowered ~0.76x as male (how the sample episode's CEO was made). Steps are wide because
#: the speaker model (and a listener) hears Piper joe at x1.0 and x0.85 as 0.66 alike, x1.0
#: and x1.3 as 0.56, but x1.3 and x1.5 as 0.81 (nearly one person); speaking parameters
#: alone change nothing (0.99). One voice thus gives about 3-4 distinct people.
LADDERS: dict[tuple[str, str], tuple[float, ...]] = {
    ("male", "female"): (1.32, 1.6, 1.2, 1.45),
    ("female", "male"): (0.76, 0.62, 0.86),
}
SAME_LADDER: tuple[float, ...] = (1.0, 0.78, 1.15, 0.88, 1.07)
#: typical speaking F0 (Hz) of a voice by gender, to aim a pitched voice at a speaker's pitch
NOMINAL_HZ = {"male": 120.0, "female": 210.0, "unknown": 165.0}
#: Piper speaking parameters cycled with the ladder steps (rate and liveliness differ too)
PIPER_VARIANTS: tuple[dict[str, float], ...] = (
    {},
    {"length_scale": 1.08, "noise_scale": 0.5, "noise_w_scale": 0.6},
    {"length_scale": 0.95, "noise_scale": 0.7, "noise_w_scale": 0.9},
    {"length_scale": 1.04, "noise_scale": 0.6, "noise_w_scale": 1.0},
    {"length_scale": 0.97, "noise_scale": 0.75, "noise_w_scale": 0.7},
)
#: pitch steps for a natural voice once every real voice of the gender is cast: within +-10%
#: (further, a voice stops sounding like a person: the issue 13 rule)
NATURAL_STEPS: tuple[float, ...] = (1.07, 0.93)
#: a bible age (years) from which a character is cast with old-sounding voices first
SENIOR_AGE = 60
_SENIOR_RE = re.compile(r"elder|senior|grand(?:mother|father|ma|pa)|old (?:man|woman|lady)|老人|老年")
_NUMBER_RE = re.compile(r"\d+")


def series_state_dir(series_dir: Path) -> Path:
    """Where a series keeps its speaker voice prints and voice casting: SERIES_DIR/.locpipe."""
    return series_dir / STATE_DIRNAME


def writable_state_dir(series_dir: Path, work_dir: Path) -> Path:
    """SERIES_DIR/.locpipe when it can be written, else WORK_DIR/series/<name>.

    The fallback serves read-only sources and episodes whose folder is hidden (a watch
    daemon's ``INBOX/.processing``: not a series folder, and it must stay empty).
    """
    fallback = work_dir / "series" / (series_dir.name.lstrip(".") or "series")
    if not series_dir.name.startswith("."):
        state = series_state_dir(series_dir)
        try:
            state.mkdir(parents=True, exist_ok=True)
            if os.access(state, os.W_OK):
                return state
        except OSError:
            pass
        log.warning("%s is not writable: speaker labels and voices for this series are kept in %s", state, fallback)
    fallback.mkdir(parents=True, exist_ok=True)
    return fallback


# --------------------------------------------------------------------------- models


class VoiceStyle(BaseModel):
    """One character's sound: a backend voice plus how it is varied."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: "<backend>:<voice>", e.g. "piper:en_US-joe-medium"
    voice: str
    #: pitch factor applied after synthesis (tempo kept); 1.0 = the voice as it is
    pitch: float = Field(1.0, ge=0.5, le=2.0)
    length_scale: float | None = Field(None, gt=0.3, lt=3.0)
    noise_scale: float | None = Field(None, ge=0.0, le=2.0)
    noise_w_scale: float | None = Field(None, ge=0.0, le=2.0)
    #: chosen automatically (an explicit entry or the bible's voice replaces it)
    auto: bool = False

    @property
    def backend(self) -> str:
        return self.voice.partition(":")[0]

    @property
    def voice_name(self) -> str:
        return self.voice.partition(":")[2]

    def params(self) -> dict[str, float]:
        """Engine speaking parameters that are set (empty: the engine's defaults)."""
        return {k: v for k in ("length_scale", "noise_scale", "noise_w_scale") if (v := getattr(self, k)) is not None}

    def sound(self) -> tuple:
        """What a listener hears as 'the same voice' (automatic voices must differ in this)."""
        return (self.voice.partition("@")[0], round(self.pitch, 2))  # "x@es" and "x@es-419": one speaker

    def describe(self) -> str:
        extra = [f"pitch x{self.pitch:.2f}"] if abs(self.pitch - 1.0) > 1e-3 else []
        extra += [f"{k}={v:g}" for k, v in self.params().items()]
        return " ".join([self.voice, *extra])


class MatchRecord(BaseModel):
    """How one speaker of one episode was linked to a character (locpipe.localize.characters), as recorded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    character: str | None = None
    confidence: float = 0.0
    #: "episode"/"series": voices.yaml said so; "auto": the dialogue's evidence; "none": not linked
    method: str = "none"
    reasons: list[str] = []
    #: the best automatic candidate when it stayed below the threshold
    rejected: str | None = None

    @classmethod
    def of(cls, match: chars.SpeakerMatch) -> MatchRecord:
        return cls(character=match.character, confidence=match.confidence, method=match.method,
                   reasons=list(match.reasons), rejected=match.rejected)

    def as_match(self, speaker: str) -> chars.SpeakerMatch:
        return chars.SpeakerMatch(speaker, self.character, self.confidence, self.method,  # type: ignore[arg-type]
                                  tuple(self.reasons), self.rejected)


class VoiceMap(BaseModel):
    """SERIES_DIR/.locpipe/voices.yaml."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    #: speaker label -> character (a key of the bible's characters, e.g. 林晓), for the whole series
    speakers: dict[str, str] = {}
    #: episode -> speaker label -> character: one episode's fix, over ``speakers`` and the automatic match
    episodes: dict[str, dict[str, str]] = {}
    #: an automatic speaker -> character match is used from this confidence on (0-1; above 1: never)
    match_threshold: float = Field(chars.DEFAULT_THRESHOLD, ge=0.0)
    #: episode -> speaker label -> how it was linked to a character (written by the pipeline, for review)
    matched: dict[str, dict[str, MatchRecord]] = {}
    #: market code -> (character or speaker label) -> voice
    markets: dict[str, dict[str, VoiceStyle]] = {}


def voices_path(state_dir: Path) -> Path:
    return state_dir / VOICES_FILE


def load_voice_map(path: Path) -> VoiceMap:
    """The series' casting; a missing file is an empty map, a broken one a ConfigError naming it."""
    if not path.exists():
        return VoiceMap()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return VoiceMap.model_validate(data)
    except (yaml.YAMLError, ValueError) as exc:
        raise ConfigError(path, "", f"not a valid voices file: {exc}") from None


def save_voice_map(path: Path, vm: VoiceMap) -> None:
    header = ("# Voices per character for this series (locpipe voices SERIES_DIR shows and edits it).\n"
              "# speakers: speaker label -> character; markets: market -> character or label -> voice.\n"
              "# Entries with auto: true were chosen automatically; edit one (or drop auto) to fix it.\n")
    body = yaml.safe_dump(vm.model_dump(mode="json", exclude_none=True), allow_unicode=True, sort_keys=True)
    atomic_write_text(path, header + body)


# --------------------------------------------------------------------------- pure casting


def cast_key(vm: VoiceMap, label: str, characters: dict[str, str] | None = None) -> str:
    """The key a speaker's voice is stored under: its character when mapped, else the label.

    ``characters``: this episode's label -> character (``episode_mapping``); without it the
    series mapping of voices.yaml.
    """
    return (characters if characters is not None else vm.speakers).get(label) or label


@dataclass(frozen=True)
class CastVoice:
    """One voice automatic casting may use: its spec and the backend's facts about it (gender, grade, ...)."""

    spec: str
    info: VoiceInfo

    @property
    def gender(self) -> str | None:
        return self.info.gender

    @property
    def quality(self) -> str:
        """"natural" or "accented" (a voice speaking a language it was not trained on)."""
        return self.info.quality or "natural"


def as_cast_voice(voice: CastVoice | tuple) -> CastVoice:
    """A (spec, gender) pair from older callers, or a CastVoice as it is."""
    if isinstance(voice, CastVoice):
        return voice
    spec, gender = voice
    return CastVoice(spec, VoiceInfo(spec.partition(":")[2], "", 0, gender=gender, quality="natural"))


def age_band(age: int | str | None) -> str:
    """The bible's ``age`` as a casting band: "senior" (60+ or words like "elderly") or "adult"."""
    if isinstance(age, int):
        return "senior" if age >= SENIOR_AGE else "adult"
    if isinstance(age, str):
        numbers = [int(n) for n in _NUMBER_RE.findall(age)]  # "60s", "about 70"
        if (numbers and max(numbers) >= SENIOR_AGE) or _SENIOR_RE.search(age.lower()):
            return "senior"
    return "adult"


def _grade(voice: CastVoice) -> float:
    from locpipe.backends.tts.kokoro_voices import grade_rank

    return grade_rank(voice.info.grade)


def natural_palette(voices: list[CastVoice], gender: str, age: str = "adult") -> list[VoiceStyle]:
    """Candidates from real voices, best first; empty when no voice of ``gender`` exists.

    Tiers: natural voices of the gender (the market default's accent first, then grade; for an
    adult, old-sounding packs last), accented voices of the gender, then the same voices at a
    pitch step within +-10% (NATURAL_STEPS). An unknown gender takes every voice, by grade.
    """
    accent = voices[0].info.accent if voices else ""
    fits = [v for v in voices if gender not in ("male", "female") or v.gender == gender]
    if not fits:
        return []

    def rank(v: CastVoice) -> tuple:  # a better grade letter first; within one, the market's accent
        return (v.info.age != age, round(_grade(v)), v.info.accent != accent, _grade(v), voices.index(v))

    natural = sorted((v for v in fits if v.quality == "natural"), key=rank)
    natural_now = [v for v in natural if v.info.age == age or age == "senior"]
    others = [v for v in natural if v not in natural_now]
    accented = sorted((v for v in fits if v.quality != "natural"), key=rank)
    real = [*natural_now, *accented, *others]
    out = [VoiceStyle(voice=v.spec, auto=True) for v in real]
    out += [VoiceStyle(voice=v.spec, pitch=step, auto=True) for step in NATURAL_STEPS for v in natural_now or real]
    return out


def palette(voices: list[CastVoice | tuple], gender: str, piper: bool,
            pitch_hz: float | None = None, age: str = "adult") -> list[VoiceStyle]:
    """Automatic voice candidates, best first, for a speaker of ``gender``.

    ``voices``: the market's backend's voices in its language, the market's default first.
    With two or more natural voices the real voices come first (``natural_palette``). With one
    (Piper joe) or none of the wanted gender: that voice at its natural pitch and pitch/rate
    variants (LADDERS); with the speaker's measured ``pitch_hz`` those are ordered by how close
    their pitch comes to it, so of two speakers the higher voice keeps the higher dub voice.
    """
    cast_voices = [as_cast_voice(v) for v in voices]
    if sum(v.quality == "natural" for v in cast_voices) >= 2:
        found = natural_palette(cast_voices, gender, age)
        if found:
            return found
    pairs = [(v.spec, v.gender) for v in cast_voices]
    ordered = sorted(pairs, key=lambda v: 0 if (gender in ("male", "female") and v[1] == gender) else 1)
    ladders = [LADDERS.get((vg or "unknown", gender), SAME_LADDER) for _, vg in ordered]
    out: list[VoiceStyle] = []
    for step in range(max(len(x) for x in ladders) if ladders else 0):
        for (spec, _), ladder in zip(ordered, ladders, strict=True):
            if step < len(ladder):
                params = PIPER_VARIANTS[step % len(PIPER_VARIANTS)] if piper else {}
                out.append(VoiceStyle(voice=spec, pitch=ladder[step], auto=True, **params))
    if pitch_hz:
        genders = dict(pairs)

        def distance(style: VoiceStyle) -> float:
            heard = NOMINAL_HZ.get(genders.get(style.voice) or "unknown", NOMINAL_HZ["unknown"]) * style.pitch
            return abs(float(np.log(heard / pitch_hz)))

        out.sort(key=distance)  # stable: ties keep the order above
    return out


def resolve_casting(vm: VoiceMap, speakers: list[tuple], market: str, voices: list[CastVoice | tuple],
                    bible_voices: dict[str, str], bible_genders: dict[str, str],
                    piper: bool, bible_ages: dict[str, str] | None = None,
                    characters: dict[str, str] | None = None) -> tuple[dict[str, VoiceStyle], VoiceMap]:
    """Voice for each (label, guessed gender[, pitch Hz]) of an episode in ``market``; the map with new choices.

    ``bible_voices``: character -> voice spec for this market from the bible; ``bible_genders``:
    character -> gender; ``bible_ages``: character -> age band (``age_band``). ``voices`` are
    the voices automatic choices may use (see ``palette``); an automatic entry whose voice is
    no longer among them is chosen again. ``characters``: this episode's label -> character
    (``episode_mapping``; default: the series mapping), so a character keeps its voice
    whatever label it has in an episode.
    """
    cast = dict(vm.markets.get(market, {}))
    cast_voices = [as_cast_voice(v) for v in voices]
    allowed = {v.spec for v in cast_voices}
    mapping = characters if characters is not None else vm.speakers
    out: dict[str, VoiceStyle] = {}
    fresh: list[tuple[str, str, str, float | None]] = []  # newly cast: (label, key, gender, pitch)
    for label, guessed, *measured in speakers:
        char = mapping.get(label)
        key = cast_key(vm, label, mapping)
        if char and key not in cast:
            _adopt_label_voice(cast, label, char, bible_genders.get(char, "unknown"), cast_voices)
        entry = cast.get(key)
        if entry is not None and not entry.auto:
            out[label] = entry
        elif char and bible_voices.get(char):
            out[label] = VoiceStyle(voice=bible_voices[char])
        elif entry is not None and entry.voice in allowed:
            out[label] = entry
        else:
            gender = bible_genders.get(char or "", "unknown")
            gender = gender if gender in ("male", "female") else guessed
            used = {s.sound() for k, s in cast.items() if k != key}
            used |= {VoiceStyle(voice=v).sound() for c, v in bible_voices.items() if c != char}
            candidates = palette(voices, gender, piper, measured[0] if measured else None,
                                 (bible_ages or {}).get(char or "", "adult"))
            choice = next((s for s in candidates if s.sound() not in used), None)
            if choice is None:  # more speakers than distinct candidates: voices repeat, in turn (QC says so)
                choice = candidates[len(cast) % len(candidates)]
                log.warning("%s: every distinct voice is cast; %s shares %s", market, key, choice.describe())
            cast[key] = choice
            out[label] = choice
            fresh.append((label, key, gender, measured[0] if measured else None))
    _keep_pitch_order(fresh, cast, out)
    markets = {**vm.markets, market: cast}
    return out, vm.model_copy(update={"markets": markets})


def _adopt_label_voice(cast: dict[str, VoiceStyle], label: str, char: str, gender: str,
                       voices: list[CastVoice]) -> None:
    """A speaker newly linked to ``char`` hands its automatic voice (kept under its label) to the character.

    So the lead heard in earlier episodes keeps her voice once she is recognized; a voice of
    the wrong gender (cast from a misleading pitch) is dropped instead and the character is
    cast afresh. Explicit label entries stay where they are.
    """
    entry = cast.get(label)
    if entry is None or not entry.auto:
        return
    del cast[label]
    heard = _heard_gender(next((v.gender for v in voices if v.spec == entry.voice), None), entry.pitch)
    if gender not in ("male", "female") or heard in (None, gender):
        cast[char] = entry
    else:
        log.info("%s is %s (%s): the %s voice %s cast from its pitch is recast", label, char, gender, heard,
                 entry.describe())


def _heard_gender(voice_gender: str | None, pitch: float) -> str | None:
    """The gender a listener hears in a voice at ``pitch``: a male voice raised ~1.15x+ sounds female (LADDERS)."""
    if voice_gender == "male" and pitch >= min(LADDERS[("male", "female")]) - 0.05:
        return "female"
    if voice_gender == "female" and pitch <= max(LADDERS[("female", "male")]) + 0.01:
        return "male"
    return voice_gender


def cast_notes(vm: VoiceMap, market: str, bible_voices: dict[str, str] | None = None) -> list[str]:
    """What QC should know about a market's cast: characters sharing one voice, pitch-varied voices.

    Over the whole series cast (every character ever cast in ``market``), not one episode:
    two characters of a series must not sound alike whichever episodes they meet in.
    """
    by_sound: dict[tuple, list[str]] = {}
    styles = {**{c: VoiceStyle(voice=v) for c, v in (bible_voices or {}).items()}, **vm.markets.get(market, {})}
    for key, style in styles.items():
        by_sound.setdefault(style.sound(), []).append(key)
    notes = [f"{' and '.join(sorted(keys))} share the voice {styles[keys[0]].describe()} (the cast ran out of "
             f"distinct voices; set one with `locpipe voices SERIES --market {market} --set`)"
             for keys in by_sound.values() if len(keys) > 1]
    notes += [f"{key}: {style.describe()} (a real voice at another pitch: the natural voices of that gender are "
              f"all cast)" for key, style in sorted(styles.items()) if style.auto and abs(style.pitch - 1.0) > 1e-3
              and style.backend != "piper"]
    return notes


def _keep_pitch_order(fresh: list[tuple[str, str, str, float | None]], cast: dict[str, VoiceStyle],
                      out: dict[str, VoiceStyle]) -> None:
    """Among speakers of one gender cast together, give the higher speaker the higher voice.

    Greedy nearest choices depend on who comes first; the set chosen is kept, only handed out
    again in pitch order.
    """
    for gender in {g for _, _, g, _ in fresh}:
        group = [f for f in fresh if f[2] == gender and f[3] is not None]
        if len(group) < 2:
            continue
        styles = sorted((out[label] for label, _, _, _ in group), key=lambda st: st.pitch)
        if len({st.voice for st in styles}) > 1:  # distinct real voices: their pitch order is unknown
            continue
        for (label, key, _, _), style in zip(sorted(group, key=lambda f: f[3]), styles, strict=True):
            cast[key] = out[label] = style


def parse_style(value: str) -> VoiceStyle:
    """``piper:en_US-joe-medium[,pitch=1.3,length_scale=1.1]`` -> an explicit VoiceStyle."""
    spec, *extras = [p.strip() for p in value.split(",")]
    fields: dict[str, object] = {"voice": spec}
    for extra in extras:
        key, sep, num = extra.partition("=")
        if not sep:
            raise ValueError(f"{extra!r}: expected key=value (pitch, length_scale, noise_scale, noise_w_scale)")
        fields[key.strip()] = float(num)
    return VoiceStyle.model_validate(fields)


# --------------------------------------------------------------------------- I/O shells


def episode_mapping(vm: VoiceMap, episode: str, lines: list[chars.Line], speakers: list[tuple],
                    bible) -> dict[str, chars.SpeakerMatch]:
    """Each speaker's character in ``episode``: voices.yaml's explicit mappings, else the dialogue's evidence.

    ``speakers``: (label, gender guessed from pitch[, pitch Hz]) as for ``resolve_casting``.
    Automatic matches of the same labels in other episodes count as one more clue.
    """
    earlier: dict[str, dict[str, int]] = {}
    for ep, records in vm.matched.items():
        for label, rec in records.items():
            if ep != episode and rec.method == "auto" and rec.character:
                earlier.setdefault(label, {}).setdefault(rec.character, 0)
                earlier[label][rec.character] += 1
    heard = {label: (guessed, measured[0] if measured else None) for label, guessed, *measured in speakers}
    return chars.match_speakers(lines, chars.facts_from_bible(bible), heard, series=vm.speakers,
                                episode=vm.episodes.get(episode, {}),
                                earlier={label: max(counts, key=lambda c: (counts[c], c))
                                         for label, counts in earlier.items()},
                                threshold=vm.match_threshold)


def cast_market(state_dir: Path, market: str, language: str, default_spec: str, speakers: list[tuple],
                bible=None, *, episode: str | None = None,
                lines: list[chars.Line] | None = None) -> dict[str, VoiceStyle]:
    """Voices for an episode's speakers in ``market``, recording new automatic choices (locked).

    With ``episode`` and its ``lines`` each speaker is first linked to a bible character
    (``episode_mapping``); the links are recorded under ``matched`` in voices.yaml, and the
    character's gender, age and earlier voice decide the cast.
    """
    from locpipe.backends.tts.base import get_tts_backend
    from locpipe.stages.speakers import locked

    backend_name, _, default_voice = default_spec.partition(":")
    backend = get_tts_backend(backend_name)
    voices = market_voices(backend, language, default_voice)
    bible_voices, bible_genders, bible_ages = bible_cast(bible, market)
    path = voices_path(state_dir)
    with locked(path):
        vm = load_voice_map(path)
        characters = None
        if episode is not None:
            matches = episode_mapping(vm, episode, lines or [], speakers, bible)
            characters = {label: m.character for label, m in matches.items() if m.character}
            vm_matched = {**vm.matched, episode: {label: MatchRecord.of(m) for label, m in matches.items()}}
            updated_vm = vm.model_copy(update={"matched": vm_matched})
        else:
            updated_vm = vm
        casting, updated = resolve_casting(updated_vm, speakers, market, voices, bible_voices, bible_genders,
                                           piper=backend_name == "piper", bible_ages=bible_ages,
                                           characters=characters)
        if updated != vm:
            save_voice_map(path, updated)
            log.info("voices for %s recorded in %s", market, path)
    return casting


def market_voices(backend, language: str, default_voice: str) -> list[CastVoice]:
    """The voices automatic casting may use in ``language``: the market's default first, then the backend's."""
    from dataclasses import replace

    infos = [backend.voice_info(default_voice), *backend.voices_for(language)]
    out: list[CastVoice] = []
    for v in infos:  # one entry per speaker: "ef_dora@es-419" and "ef_dora" are one person (exact tag first)
        if all(pack_of(c.spec) != pack_of(f"{backend.name}:{v.name}") for c in out):
            info = v if v.quality else replace(v, quality=backend.voice_quality(v.name))
            out.append(CastVoice(f"{backend.name}:{v.name}", info))
    return out


def pack_of(spec: str) -> str:
    """The speaker behind a voice spec: ``kokoro:ef_dora@es-419`` -> ``kokoro:ef_dora`` (same timbre)."""
    return spec.partition("@")[0]


def bible_cast(bible, market: str) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(character -> voice spec for ``market``, character -> gender, character -> age band) from the bible."""
    voices: dict[str, str] = {}
    genders: dict[str, str] = {}
    ages: dict[str, str] = {}
    for name, char in (bible.characters.items() if bible is not None else ()):
        genders[name] = char.gender
        ages[name] = age_band(char.age)
        if char.voice.get(market):
            voices[name] = char.voice[market]
    return voices, genders, ages


def bible_lexicon(bible, language: str) -> dict[str, str]:
    """Written name -> how the dub voice says it in ``language``: the bible's ``say``, else a pinyin respelling.

    Only the TTS input changes; subtitles keep the bible's rendering.
    """
    from locpipe.backends.tts.pronounce import lexicon_for
    from locpipe.localize.bible import for_language

    names: dict[str, str | None] = {}
    for char in (bible.characters.values() if bible is not None else ()):
        written = for_language(char.render, language)
        if written:
            names[written] = for_language(char.say, language)
    return lexicon_for(names, language)


def market_cast_notes(state_dir: Path, market: str, bible=None, episode: str | None = None) -> list[str]:
    """``cast_notes`` for the series cast recorded in ``state_dir`` (for the dub's QC).

    With ``episode``, first which character each of its speakers was linked to and why.
    """
    vm = load_voice_map(voices_path(state_dir))
    links = [rec.as_match(label).describe() for label, rec in sorted(vm.matched.get(episode or "", {}).items())]
    return links + cast_notes(vm, market, bible_cast(bible, market)[0])


def episode_characters(state_dir: Path, episode: str, transcript, bible, labels=None) -> dict[int, str]:
    """Cue index -> bible character for the episode's labelled ``transcript`` (read-only).

    For a translation prompt that should know who speaks each line (names, honorifics, the
    register between two characters): voices.yaml's mappings, else the dialogue's evidence
    above the series' threshold, as casting decides (``labels``, the speakers stage's
    SpeakerLabels, adds the pitch clue casting also uses).
    """
    lines = chars.lines_of(transcript)
    return chars.cue_characters({ln.index: ln.speaker for ln in lines},
                                _episode_matches(state_dir, episode, lines, bible, labels))


def episode_links(state_dir: Path, episode: str, transcript, bible, labels=None) -> dict[str, str]:
    """Speaker label -> bible character for the episode's linked speakers (read-only; unlinked
    labels are absent), decided as ``episode_characters`` decides it.

    A link is one label in one episode (every cue of the label is that character), so the
    translation prompt and its cache key take the label's character, not a per-cue list.
    """
    matches = _episode_matches(state_dir, episode, chars.lines_of(transcript), bible, labels)
    return {label: m.character for label, m in sorted(matches.items()) if m.character}


def _episode_matches(state_dir: Path, episode: str, lines: list[chars.Line], bible,
                     labels) -> dict[str, chars.SpeakerMatch]:
    heard = {s.label: (s.gender, s.pitch_hz) for s in (labels.speakers if labels is not None else [])}
    speakers = [(s, *heard.get(s, ("unknown", None))) for s in sorted({ln.speaker for ln in lines})]
    return episode_mapping(load_voice_map(voices_path(state_dir)), episode, lines, speakers, bible)


def speak(style: VoiceStyle, text: str, out_rate: int, backends: dict) -> np.ndarray:
    """``text`` in ``style``'s voice at ``out_rate`` Hz: engine parameters, then pitch (ffmpeg).

    ``backends``: backend name -> instance, reused (and filled) across lines.
    """
    from locpipe.backends.tts.base import get_tts_backend

    backend = backends.get(style.backend)
    if backend is None:
        backend = backends[style.backend] = get_tts_backend(style.backend)
    params = style.params()
    audio = backend.synthesize(text, style.voice_name, params=params) if params else \
        backend.synthesize(text, style.voice_name)
    return repitch(audio, backend.sample_rate(style.voice_name), style.pitch, out_rate)


def speak_ahead(requests: list[tuple[VoiceStyle | None, str]], default, default_voice: str,
                backends: dict) -> int:
    """Let each engine speak its share of (style or None for the market's voice, text) ahead, in parallel.

    The same engine calls ``speak`` (or, without a style, ``default.synthesize``) makes
    later, so those return at once (``TTSBackend.prefetch``); engines that speak one line at
    a time do nothing. Returns how many lines were spoken ahead.
    """
    from locpipe.backends.tts.base import get_tts_backend

    by_engine: dict[str, list[tuple[str, str, dict[str, float] | None]]] = {}
    for style, text in requests:
        if style is None:
            backends.setdefault(default.name, default)
            by_engine.setdefault(default.name, []).append((text, default_voice, None))
        else:
            if style.backend not in backends:
                backends[style.backend] = get_tts_backend(style.backend)
            by_engine.setdefault(style.backend, []).append((text, style.voice_name, style.params() or None))
    return sum(backends[name].prefetch(items) for name, items in by_engine.items())


def repitch(audio: np.ndarray, rate: int, pitch: float, out_rate: int) -> np.ndarray:
    """Shift pitch by ``pitch`` keeping tempo (rubberband) and resample to ``out_rate``."""
    import tempfile

    from locpipe.media.ffmpeg import run_ffmpeg

    filters = []
    if abs(pitch - 1.0) > 1e-3:
        filters.append(f"rubberband=pitch={pitch:.4f}:pitchq=quality")
    if rate != out_rate:
        filters.append(f"aresample={out_rate}")
    if not filters or audio.size == 0:
        return audio
    with tempfile.TemporaryDirectory(prefix="locpipe-voice-") as tmp:
        src, dst = Path(tmp) / "in.f32", Path(tmp) / "out.f32"
        np.asarray(audio, dtype="<f4").tofile(src)
        run_ffmpeg(["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(src), "-af", ",".join(filters),
                    "-f", "f32le", "-ar", str(out_rate), "-ac", "1", str(dst)], what=f"voice pitch x{pitch:.2f}")
        return np.clip(np.fromfile(dst, dtype="<f4"), -1.0, 1.0)


def check_style(style: VoiceStyle, language: str) -> str | None:
    """Why ``style`` cannot speak ``language`` here (unknown backend or voice, other language), or None."""
    from locpipe.backends.tts.base import get_tts_backend

    try:
        info = get_tts_backend(style.backend).voice_info(style.voice_name)
    except BackendUnavailable as exc:
        return str(exc)
    if info.base_language != language.split("-")[0].lower():
        return f"{style.voice} speaks {info.language}, the market's language is {language}"
    return None
