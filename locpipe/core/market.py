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
from locpipe.core.store import ArtifactStore, Stored, make_key
from locpipe.errors import BackendUnavailable, StageError
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
    with as_stage("review"):  # a linguist's edited file is the final word (locpipe.core.review)
        from locpipe.core.review import apply_translation_review

        translation = apply_translation_review(ctx, rec, market, translation, unit, store)
    with as_stage("segment"):
        track = segment_market(ctx, rec, market, translation, store)
    with as_stage("synthesize"):
        dub = synthesize_market(ctx, rec, market, translation, unit, store)
    with as_stage("mix"):
        mix = mix_market(ctx, rec, market, dub, store)
    return MarketPlan(market=market, store=store, translation=translation, track=track, dub=dub, mix=mix)


def data_policy(ctx: EpisodeContext, market: Market) -> str:
    """"local-only" when the series bible or the market says so, else "any"."""
    bible = ctx.bible
    local = market.config.data_policy == "local-only" or (bible is not None and bible.data_policy == "local-only")
    return "local-only" if local else "any"


def translate_market(ctx: EpisodeContext, rec: Recognition, market: Market, unit: UnitReport,
                     store: ArtifactStore) -> Stored[Translation]:
    """The market's translation by the first backend of its chain that can run and succeeds.

    A backend that fails on the episode itself (the local model does not load, a request
    times out, an answer never validates: ``BackendUnavailable``) is recorded in
    ``unit.fallbacks`` and the next one in the chain is tried.
    """
    c = market.config
    policy = data_policy(ctx, market)
    unit.data_policy = policy
    source = rec.transcript.model.language
    names = list(c.translation.backends)
    tried: list[str] = []
    while True:
        backend = choose_backend(names, source, c.language, make=lambda n: ctx.resources.mt(n, _threads(ctx)),
                                 local_only=policy == "local-only", tried=tried)
        try:
            stored = _translate_with(ctx, rec, market, backend, store)
        except StageError as exc:
            if not isinstance(exc.__cause__, BackendUnavailable) or backend.name not in names:
                raise
            reason = f"{backend.name}: {exc.__cause__}"
            log.warning("%s: translation by %s failed (%s); trying the next backend", market.code, backend.name,
                        exc.__cause__)
            tried.append(reason)
            unit.fallbacks.append(reason)
            names = names[names.index(backend.name) + 1:]
            continue
        break
    route = backend.route(c.language)
    unit.backends["translate"] = backend.version + (f" route={route}" if route != "direct" else "")
    if policy == "local-only":
        skipped = [n for n in c.translation.backends if ctx.resources.mt(n, _threads(ctx)).remote]
        unit.data_note = (f"data_policy local-only: translated by {backend.name} on this machine"
                          + (f"; skipped remote backend(s) {', '.join(skipped)}" if skipped else "")
                          + "; no text or audio left the machine")
    unit.tm_hits, unit.tm_misses = stored.model.tm_hits, stored.model.tm_misses
    return stored


def _threads(ctx: EpisodeContext) -> int:
    """A model's thread share: the worker's inference threads (cores // --jobs)."""
    return ctx.settings.asr.threads


def tm_file(settings) -> Path:
    """The translation memory of a run: ``--tm``, else WORK_DIR/tm.sqlite."""
    return settings.tm_path or settings.work_dir / "tm.sqlite"


def approved_lines(ctx: EpisodeContext, transcript, language: str) -> str | None:
    """Digest of the reviewer-approved TM lines this episode would take (None: none), for the
    translate key: a line approved in another episode must reach this one's cached translation."""
    from locpipe.localize.tm import TranslationMemory, keys_for_lines

    keys = keys_for_lines([c.text for c in transcript.cues], transcript.language, language, "")
    with TranslationMemory(tm_file(ctx.settings)) as tm:
        found = tm.lookup_approved(keys, exclude_episode=ctx.name)
    if not found:
        return None
    payload = sorted((n, found[k][0]) for n, k in enumerate(keys) if k in found)
    return make_key("approved", {"lines": payload})


def _translate_with(ctx: EpisodeContext, rec: Recognition, market: Market, backend, store: ArtifactStore
                    ) -> Stored[Translation]:
    from locpipe.localize.tm import TranslationMemory

    c = market.config
    bible = ctx.bible
    parts = {"transcript": rec.transcript.key, "language": c.language, "backend": backend.name,
             "version": backend.version, "bible": bible.version if bible else None,
             "adaptation": c.adaptation.model_dump(), "notes": c.translation.notes}
    route = backend.route(c.language)
    if route != "direct":
        parts["route"] = route
    approved = approved_lines(ctx, rec.transcript.model, c.language)
    if approved:
        parts["approved"] = approved
    links = speaker_links(ctx, rec) if translate.names_speakers(backend) else {}
    if translate.uses_speakers(backend):  # the prompt shows who speaks: labels and their characters
        parts["speakers"] = {"labels": [cue.speaker for cue in rec.transcript.model.cues], "links": links}

    def make(_folder: Path) -> Translation:
        with TranslationMemory(tm_file(ctx.settings)) as tm:
            return translate.translate_episode(
                rec.transcript.model, c.language, backend, audio_16k=rec.audio_16k, bible=bible, tm=tm,
                adaptation=c.adaptation, context={"notes": c.translation.notes}, episode=ctx.name,
                speakers=links)

    return ctx.stage(market.code, "translate", parts, Translation, make, store)


def speaker_links(ctx: EpisodeContext, rec: Recognition) -> dict[str, str]:
    """Speaker label -> bible character for the translation prompt, as casting will link them
    (voices.yaml, else the dialogue's evidence: ``localize.voices.episode_links``). The
    speakers stage ran before (``core.recognition``); empty without labels or a bible, and a
    broken voices.yaml only costs the prompt its names (casting reports it)."""
    if ctx.bible is None or rec.speakers is None or not rec.speakers.available:
        return {}
    from locpipe.localize.voices import episode_links

    try:
        return episode_links(ctx.series_state, ctx.name, rec.transcript.model, ctx.bible, rec.speakers)
    except Exception as exc:  # noqa: BLE001 - names only help the prompt: never fail the translation
        log.warning("speaker names not given to the translation prompt (%s); it sees labels", describe(exc))
        return {}


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
    from locpipe.stages.synthesize import ClipCache, synthesize_dub

    dub = market.config.dub
    # the market's voice, else its backends, else the language's default chain
    choice = choose_voice(market.config.language, dub.voice, dub.backend, make=ctx.resources.tts)
    tts = choice.backend
    if tts is not None:  # the worker's core share (cores // --jobs): Kokoro speaks that many lines at once
        tts.configure_threads(_threads(ctx))
    unit.backends["synthesize"] = f"{tts.name} {tts.version}" if tts else choice.describe()
    parts = {"translation": translation.key, "dub": dub.model_dump(), "tts": tts.version if tts else "none",
             "voice": choice.spec, "duration": rec.info.duration}
    speakers, voices = casting(ctx, rec, market, choice.spec) if tts else ({}, {})
    if voices:
        parts["casting"] = {"speakers": speakers, "voices": {k: v.model_dump() for k, v in voices.items()}}
    lexicon, cast_notes = spoken_names(ctx, market, bool(voices))
    parts["lexicon"], parts["cast_notes"] = lexicon, cast_notes
    rewriters = rewriting_backends(ctx, market)
    shorteners = [b.version for b in rewriters] + [f"rules-v{condense.RULES_VERSION}"]
    parts["shorten"] = shorteners
    shorten = condense.make_shortener(market.config.language, rewriters)
    # per line: only edited lines are spoken (and shortened) again
    clips = ClipCache(ctx.settings.work_dir / "clips", tts.version, ";".join(shorteners)) if tts else None
    stored = ctx.stage(market.code, "synthesize", parts, DubTrack,
                       lambda d: synthesize_dub(translation.model, market, rec.info.duration, d, tts, choice,
                                                speakers=speakers, voices=voices, shorten=shorten,
                                                make_backend=ctx.resources.tts, lexicon=lexicon,
                                                cast_notes=cast_notes, clips=clips), store)
    unit.dub_lines = dub_line_report(stored)
    return stored


def dub_line_report(stored: Stored[DubTrack]) -> dict:
    """For the manifest: which dub lines this run spoke, and which came from the clip cache."""
    spoken = [line.cue_index for line in stored.model.lines if line.outcome != "skipped"]
    if stored.cached:  # the whole dub came from the store: no line was looked at
        return {"stage_cached": True, "synthesized": [], "reused": spoken}
    cache = stored.model.line_cache
    return {"stage_cached": False, "synthesized": cache.get("misses", []), "reused": cache.get("hits", [])}


def spoken_names(ctx: EpisodeContext, market: Market, cast: bool) -> tuple[dict[str, str], list[str]]:
    """(how the voice says the bible's names, notes on the series cast for QC); never fails the dub."""
    from locpipe.localize.voices import bible_lexicon, market_cast_notes

    try:
        lexicon = bible_lexicon(ctx.bible, market.config.language)
        notes = market_cast_notes(ctx.series_state, market.code, ctx.bible, ctx.name) if cast else []
    except Exception as exc:  # a pronunciation slip must not cost the market its dub
        log.warning("%s: bible names not respelled for the voice (%s)", market.code, describe(exc))
        return {}, []
    return lexicon, notes


def casting(ctx: EpisodeContext, rec: Recognition, market: Market, default_spec: str) -> tuple[dict[int, str], dict]:
    """(cue index -> speaker, speaker -> VoiceStyle) for this market; empty: one voice for all."""
    labels = rec.speakers
    if labels is None or not labels.available or not labels.cues:
        return {}, {}
    from locpipe.localize.characters import lines_of
    from locpipe.localize.voices import cast_market, check_style

    try:  # speakers are linked to bible characters first (locpipe.localize.characters), then cast
        voices = cast_market(ctx.series_state, market.code, market.config.language, default_spec,
                             [(s.label, s.gender, s.pitch_hz) for s in labels.speakers], bible=ctx.bible,
                             episode=ctx.name, lines=lines_of(rec.transcript.model))
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
    local_only = data_policy(ctx, market) == "local-only"
    for name in market.config.translation.backends:
        try:
            backend = ctx.resources.mt(name, _threads(ctx))
            if local_only and backend.remote:
                log.info("%s does not shorten dub lines: remote, and data_policy is local-only", name)
                continue
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
