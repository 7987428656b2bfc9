"""One market's stages up to its mix: translate -> segment -> synthesize -> (separate) -> mix.

``plan_market`` returns a frozen ``MarketPlan``: everything the render needs. The render
itself waits (``locpipe.core.render_plan``) so that every market's export of the episode
comes out of one shared ffmpeg run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import DubTrack, MixResult, SeparationResult, SubtitleTrack, Translation
from locpipe.backends.mt.base import choose_backend
from locpipe.config import Market
from locpipe.core.context import EpisodeContext, as_stage, describe
from locpipe.core.recognition import Recognition
from locpipe.core.reports import UnitReport
from locpipe.core.store import ArtifactStore, Stored
from locpipe.errors import BackendUnavailable
from locpipe.localize import condense
from locpipe.stages import segment, translate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MarketPlan:
    """A market's artifacts up to the mix; ``store`` holds the unit's stage records."""

    market: Market
    store: ArtifactStore
    translation: Stored[Translation]
    track: Stored[SubtitleTrack]
    dub: Stored[DubTrack] | None
    mix: Stored[MixResult]


def plan_market(ctx: EpisodeContext, rec: Recognition, market: Market, unit: UnitReport,
                store: ArtifactStore) -> MarketPlan:
    """The market's stages up to the mix (raises StageError naming the failed stage).

    ``unit`` receives what the manifest reports on the way (backends used, TM hits);
    ``store`` records the unit's stages, also those before a failure.
    """
    # as_stage: whatever fails around a stage's artifact (a config rule, a backend's import) is that stage's
    with as_stage("translate"):
        translation = translate_market(ctx, rec, market, unit, store)
    with as_stage("segment"):
        track = segment_market(ctx, rec, market, translation, store)
    with as_stage("synthesize"):
        dub = synthesize_market(ctx, rec, market, translation, unit, store)
    with as_stage("mix"):
        mix = mix_market(ctx, rec, market, dub, store)
    return MarketPlan(market=market, store=store, translation=translation, track=track, dub=dub, mix=mix)


def translate_market(ctx: EpisodeContext, rec: Recognition, market: Market, unit: UnitReport,
                     store: ArtifactStore) -> Stored[Translation]:
    from locpipe.localize.tm import TranslationMemory

    c = market.config
    backend = choose_backend(c.translation.backends, rec.transcript.model.language, c.language, make=ctx.resources.mt)
    bible = ctx.bible
    unit.backends["translate"] = backend.version
    parts = {"transcript": rec.transcript.key, "language": c.language, "backend": backend.name,
             "version": backend.version, "bible": bible.version if bible else None,
             "adaptation": c.adaptation.model_dump(), "notes": c.translation.notes}

    def make(_folder: Path) -> Translation:
        tm_path = ctx.settings.tm_path or ctx.settings.work_dir / "tm.sqlite"
        with TranslationMemory(tm_path) as tm:
            return translate.translate_episode(
                rec.transcript.model, c.language, backend, audio_16k=rec.audio_16k, bible=bible, tm=tm,
                adaptation=c.adaptation, context={"notes": c.translation.notes})

    stored = ctx.stage(market.code, "translate", parts, Translation, make, store)
    unit.tm_hits, unit.tm_misses = stored.model.tm_hits, stored.model.tm_misses
    return stored


def segment_market(ctx: EpisodeContext, rec: Recognition, market: Market, translation: Stored[Translation],
                   store: ArtifactStore) -> Stored[SubtitleTrack]:
    rules = segment.rules_for(market.config.language, market.config.subtitle_rules)
    info = rec.info
    fps = info.fps or market.profile.fps
    parts = {"translation": translation.key, "rules": rules.__dict__, "fps": fps, "duration": info.duration}
    return ctx.stage(market.code, "segment", parts, SubtitleTrack,
                     lambda d: segment.build_track(translation.model, rules, duration=info.duration, fps=fps,
                                                   out_dir=d), store)


def synthesize_market(ctx: EpisodeContext, rec: Recognition, market: Market, translation: Stored[Translation],
                      unit: UnitReport, store: ArtifactStore) -> Stored[DubTrack] | None:
    """The dub, a voice per character where speakers are labelled; None for a subtitles-only market."""
    if not market.config.dub.enabled:
        return None
    from locpipe.backends.tts.select import choose_voice
    from locpipe.stages.synthesize import synthesize_dub

    dub = market.config.dub
    # the market's voice, else its backends, else the language's default chain
    choice = choose_voice(market.config.language, dub.voice, dub.backend, make=ctx.resources.tts)
    tts = choice.backend
    unit.backends["synthesize"] = f"{tts.name} {tts.version}" if tts else choice.describe()
    parts = {"translation": translation.key, "dub": dub.model_dump(), "tts": tts.version if tts else "none",
             "voice": choice.spec, "duration": rec.info.duration}
    speakers, voices = casting(ctx, rec, market, choice.spec) if tts else ({}, {})
    if voices:
        parts["casting"] = {"speakers": speakers, "voices": {k: v.model_dump() for k, v in voices.items()}}
    rewriters = rewriting_backends(ctx, market)
    parts["shorten"] = [b.version for b in rewriters] + [f"rules-v{condense.RULES_VERSION}"]
    shorten = condense.make_shortener(market.config.language, rewriters)
    return ctx.stage(market.code, "synthesize", parts, DubTrack,
                     lambda d: synthesize_dub(translation.model, market, rec.info.duration, d, tts, choice,
                                              speakers=speakers, voices=voices, shorten=shorten,
                                              make_backend=ctx.resources.tts), store)


def casting(ctx: EpisodeContext, rec: Recognition, market: Market, default_spec: str) -> tuple[dict[int, str], dict]:
    """(cue index -> speaker, speaker -> VoiceStyle) for this market; empty: one voice for all."""
    labels = rec.speakers
    if labels is None or not labels.available or not labels.cues:
        return {}, {}
    from locpipe.localize.voices import cast_market, check_style

    try:
        voices = cast_market(ctx.series_state, market.code, market.config.language, default_spec,
                             [(s.label, s.gender, s.pitch_hz) for s in labels.speakers], bible=ctx.bible)
    except Exception as exc:  # a casting problem must not cost the market its dub
        log.warning("voices per speaker unavailable for %s (%s): one voice for every line", market.code,
                    describe(exc))
        return {}, {}
    for label, style in list(voices.items()):
        problem = check_style(style, market.config.language)
        if problem:
            log.warning("%s: voice %s for %s cannot be used (%s); the market's voice speaks instead",
                        market.code, style.describe(), label, problem)
            del voices[label]
    return {c.index: c.speaker for c in labels.cues}, voices


def rewriting_backends(ctx: EpisodeContext, market: Market) -> list:
    """The market's translation backends that can shorten a dub line and can run here."""
    found = []
    for name in market.config.translation.backends:
        try:
            backend = ctx.resources.mt(name)
            if backend.can_shorten:
                backend.check_available()
                found.append(backend)
        except BackendUnavailable as exc:
            log.info("%s cannot shorten dub lines here: %s", name, exc)
    return found


def mix_market(ctx: EpisodeContext, rec: Recognition, market: Market, dub: Stored[DubTrack] | None,
               store: ArtifactStore) -> Stored[MixResult]:
    from locpipe.stages.mix import mix_audio

    if dub is not None and dub.model.backend == "none":  # no voice spoke the language: keep the original audio
        dub = None
    info = rec.info
    accompaniment, sep_key, note = separate(ctx, rec, market, store) if dub else (None, None, "")
    parts = {"source": info.sha256, "dub": dub.key if dub else None, "loudness": market.config.loudness.model_dump(),
             "duck_db": market.config.dub.duck_db if dub else None, "duration": info.duration,
             "background": sep_key or note}
    return ctx.stage(market.code, "mix", parts, MixResult,
                     lambda d: mix_audio(info, dub.model if dub else None, dub.dir if dub else None,
                                         market, info.duration, d, accompaniment=accompaniment,
                                         background_note=note), store)


def separate(ctx: EpisodeContext, rec: Recognition, market: Market,
             store: ArtifactStore) -> tuple[Path | None, str | None, str]:
    """(accompaniment WAV, separate stage key, "") or (None, None, why the original is ducked instead).

    Separation is shared by every market of the episode (one cached stage keyed by the
    source) and never fails a market: without it the mix ducks the original and QC says so.
    """
    from locpipe.backends.separation import spleeter

    info = rec.info
    if market.config.dub.background == "duck":
        return None, None, "market config dub.background is 'duck'"
    if not info.has_audio:
        return None, None, "the source has no audio"
    reason = spleeter.unavailable_reason()
    if reason:
        log.warning("%s: music and effects not separated (%s); the original is ducked under the dub",
                    market.code, reason)
        return None, None, f"separation unavailable: {reason}"
    try:
        stems = ctx.stage("", "separate", {"source": info.sha256, "model": spleeter.model_version()},
                          SeparationResult,
                          lambda d: ctx.resources.separator().separate_episode(Path(info.path), d), store)
    except Exception as exc:  # the dub still goes out, over the ducked original
        log.warning("%s: separation failed (%s); the original is ducked under the dub", market.code, describe(exc))
        return None, None, f"separation failed: {describe(exc)}"
    return stems.file(stems.model.accompaniment), stems.key, ""
