"""Promo cuts of an episode for a market: choose the moments, render the clips, QC, publish.

Everything a cut needs is already in the episode's cache: the transcript (lines, words,
speakers), the market's translation, subtitle track and mix, the ingest's dialogue audio.
Only three things are new, each a cached artifact of its own: the scene cuts (one
low-resolution decode, shared by every market), the choice of spans (``promo_select``,
with the local model's conflict rating where it is asked for and installed) and the clips.
A promo never runs a transcription, translation or dub of its own: it is handed the
market's ``MarketPlan``, whose stages were loaded from (or just made by) the episode's run.

Published as ``OUT/<market>/promo/<episode>-promo-<n>.mp4`` (+ ``.png`` contact sheet)
and ``<episode>-promo.json`` (spans, scores, signals, reasons, QC). A failure here is
logged and noted; it never fails the episode's exports.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

from locpipe.artifacts import Artifact, QCReport
from locpipe.config import Market, PromoConfig, load_profile
from locpipe.core.context import EpisodeContext, describe
from locpipe.core.market import MarketPlan
from locpipe.core.recognition import Recognition
from locpipe.core.reports import UnitReport, stage_rows
from locpipe.core.store import ArtifactStore, Stored, atomic_copy, atomic_write_text
from locpipe.render.promo import RENDER_VERSION
from locpipe.stages import promo_qc, promo_select, promo_signals
from locpipe.stages.promo_select import PromoCut, PromoLine, PromoPlan

log = logging.getLogger(__name__)

SELECT_VERSION = 1
PROMO_VERSION = 1


class SceneCuts(Artifact):
    times: list[float]
    threshold: float
    seconds: float


class PromoChoice(Artifact):
    """The choice of spans (what the JSON explains), cached per market."""

    lines: list[dict]
    cuts: list[dict]
    notes: list[str] = []
    llm: str = ""


class PromoClip(Artifact):
    number: int
    video: str
    sheet: str
    length: float
    duration: float
    ffmpeg_seconds: float
    hook: str
    spans: list[dict]
    score: float
    end_card: float
    qc: QCReport


class PromoResult(Artifact):
    market: str
    profile: str
    clips: list[PromoClip] = []
    notes: list[str] = []
    seconds: float = 0.0


# --------------------------------------------------------------------------- inputs


def promo_market(market: Market, promo: PromoConfig, config_dir: Path | None) -> Market:
    """The market with the promo's render profile (configs/profiles/<promo.render_profile>.yaml)."""
    folder = config_dir or market.source.parent.parent
    if promo.render_profile == market.profile.name:
        return market
    return market.model_copy(update={"profile": load_profile(folder, promo.render_profile)})


def promo_lines(rec: Recognition, plan: MarketPlan) -> list[PromoLine]:
    """The episode's lines with their market text, speaker, words and relative speech energy."""
    cues = {c.index: c for c in rec.transcript.model.cues}
    translated = plan.translation.model.cues
    spans = [(c.start, c.end) for c in translated]
    energy = promo_select.relative_energy(promo_signals.line_rms_db(rec.audio_16k, spans)) if spans else []
    out = []
    for c, e in zip(translated, energy, strict=True):
        src = cues.get(c.index)
        words = tuple((w.start, w.end) for w in src.words) if src else ()
        out.append(PromoLine(index=c.index, start=c.start, end=c.end, source=c.source_text, target=c.text,
                             speaker=c.speaker or (src.speaker if src else None), energy_db=e, words=words))
    return out


def scene_cuts(ctx: EpisodeContext, rec: Recognition, store: ArtifactStore) -> Stored[SceneCuts]:
    """The episode's shot changes, once per source (every market shares them)."""
    def make(_d: Path) -> SceneCuts:
        t0 = time.perf_counter()
        times = promo_signals.detect_scene_cuts(Path(rec.info.path))
        return SceneCuts(times=times, threshold=promo_signals.SCENE_THRESHOLD, seconds=time.perf_counter() - t0)

    return store.get_or_make(ctx.scope, "promo_scenes", {"v": promo_signals.SCENE_VERSION, "source": rec.info.sha256,
                                                         "threshold": promo_signals.SCENE_THRESHOLD}, SceneCuts, make)


def rated(ctx: EpisodeContext, market: Market, promo: PromoConfig, lines: list[PromoLine]) -> tuple[list[PromoLine],
                                                                                                        str]:
    """Lines with the local model's rating when the market asks for it and the model is here."""
    if not promo.llm_rating or not lines:
        return lines, ""
    if "local-llm" not in market.config.translation.backends:
        return lines, "local-llm not in the market's translation backends: rules only"
    try:
        backend = ctx.resources.mt("local-llm", ctx.settings.asr.threads)
    except Exception as exc:
        return lines, f"local-llm unavailable: {describe(exc)}"
    ratings = promo_signals.llm_ratings(backend, [ln.source for ln in lines])
    if all(r is None for r in ratings):
        return lines, "local-llm gave no ratings: rules only"
    return [replace(ln, llm=r) for ln, r in zip(lines, ratings, strict=True)], backend.version


def _span_dict(span: promo_select.Span) -> dict:
    return {"start": span.start, "end": span.end, "seconds": round(span.seconds, 3), "lines": list(span.lines),
            "score": span.score, "signals": span.signals, "why": list(span.why)}


def _cut_dict(cut: PromoCut) -> dict:
    return {"number": cut.number, "length": cut.length, "end_card": cut.end_card, "hook_line": cut.hook_line,
            "score": cut.score, "spans": [_span_dict(s) for s in cut.spans]}


def _cut_from(d: dict) -> PromoCut:
    spans = tuple(promo_select.Span(start=s["start"], end=s["end"], lines=tuple(s["lines"]), score=s["score"],
                                    signals=s["signals"], why=tuple(s["why"])) for s in d["spans"])
    return PromoCut(number=d["number"], spans=spans, length=d["length"], end_card=d["end_card"],
                    hook_line=d["hook_line"], score=d["score"])


def choose(ctx: EpisodeContext, rec: Recognition, plan: MarketPlan, promo: PromoConfig,
           store: ArtifactStore) -> tuple[Stored[PromoChoice], list[PromoLine]]:
    """The market's promo spans (cached: keyed by the translation, the transcript and the promo settings)."""
    market = plan.market
    lines = promo_lines(rec, plan)
    scenes = scene_cuts(ctx, rec, store)

    def make(_d: Path) -> PromoChoice:
        got, llm = rated(ctx, market, promo, lines)
        chosen: PromoPlan = promo_select.plan_promos(
            got, scenes.model.times, duration=rec.info.duration, fps=rec.info.fps or 30.0, length=promo.length,
            count=promo.count, end_card=promo.end_card.seconds)
        return PromoChoice(
            lines=[{"index": ln.index, "start": ln.start, "end": ln.end, "source": ln.source, "target": ln.target,
                    "speaker": ln.speaker, "energy_db": ln.energy_db, "llm": ln.llm,
                    "score": promo_select.line_score(ln), "signals": chosen.line_scores.get(ln.index, {})}
                   for ln in got],
            cuts=[_cut_dict(c) for c in chosen.cuts], notes=list(chosen.notes), llm=llm)

    parts = {"v": SELECT_VERSION, "transcript": rec.transcript.key, "translation": plan.translation.key,
             "ingest": rec.ingest.key, "scenes": scenes.key, "duration": rec.info.duration,
             "promo": {k: v for k, v in promo.model_dump().items() if k in ("count", "length", "end_card",
                                                                             "llm_rating")}}
    return store.get_or_make(ctx.scope, f"promo_select_{market.code}", parts, PromoChoice, make), lines


# --------------------------------------------------------------------------- clips


def make_clips(ctx: EpisodeContext, rec: Recognition, plan: MarketPlan, promo: PromoConfig, export_id: str,
               choice: PromoChoice, lines: list[PromoLine], folder: Path) -> PromoResult:
    """Render, measure and check every chosen cut into ``folder`` (the promo artifact's own)."""
    from locpipe.media.ffmpeg import measure_loudness
    from locpipe.media.probe import probe as probe_media
    from locpipe.render.mask import place_subtitles
    from locpipe.render.promo import PromoJob, clip_track, contact_sheet, cut_audio, render_promo
    from locpipe.stages.mix import normalize_loudness

    started = time.perf_counter()
    market = place_subtitles(promo_market(plan.market, promo, ctx.settings.config_dir), rec.onscreen, rec.info)
    texts = {ln["index"]: ln["target"] for ln in choice.lines}
    clips = []
    for d in choice.cuts:
        cut = _cut_from(d)
        n = cut.number
        hook = texts.get(cut.hook_line, "") if promo.hook and cut.hook_line is not None else ""
        raw = cut_audio(plan.mix.file(plan.mix.model.wav), cut, folder / f".promo-{n}.raw.wav",
                        market.profile.audio_sample_rate)
        wav = folder / f"promo-{n}.wav"
        normalize_loudness(raw, wav, promo.loudness, round(cut.length * market.profile.audio_sample_rate))
        raw.unlink(missing_ok=True)
        video = folder / f"promo-{n}.mp4"
        job = PromoJob(source=rec.info, market=market, audio_wav=wav, track=plan.track.model, cut=cut,
                       hook_text=hook, hook_seconds=promo.hook_seconds, cta_text=promo.end_card.text,
                       episode=ctx.name, distributor=ctx.settings.distributor, export_id=f"{export_id}-p{n}",
                       target=video, source_subs=rec.onscreen)
        layout, seconds = render_promo(job)
        wav.unlink(missing_ok=True)
        sheet = contact_sheet(video, cut.length, folder / f"promo-{n}.png")
        info = probe_media(video)
        track = clip_track(plan.track.model, cut)
        checks = [promo_qc.check_duration(info.duration, promo.length), promo_qc.check_cuts(cut, lines),
                  promo_qc.check_safe_zone(layout, market),
                  *promo_qc.check_loudness(measure_loudness(video), promo.loudness),
                  promo_qc.check_cjk_text(track, [hook, promo.end_card.text], market),
                  *_ocr_check(ctx, rec, market, video, track, layout.watermark)]
        clips.append(PromoClip(number=n, video=video.name, sheet=sheet.name, length=cut.length,
                               duration=round(info.duration, 3), ffmpeg_seconds=round(seconds, 3), hook=hook,
                               spans=d["spans"], score=cut.score, end_card=cut.end_card,
                               qc=promo_qc.report(ctx.name, market.code, checks)))
    return PromoResult(market=market.code, profile=market.profile.name, clips=clips, notes=choice.notes,
                       seconds=round(time.perf_counter() - started, 3))


def _ocr_check(ctx: EpisodeContext, rec: Recognition, market: Market, video: Path, track, mark: str) -> list:
    """The export QC's OCR of frames for readable Chinese (``export.burned_text``), sampled at
    the clip's own subtitle times; the clip's watermark text is its own."""
    from locpipe.core.export import burned_text

    if not track.events:
        return []
    timed = replace(rec, transcript=Stored(promo_qc.clip_transcript(track), rec.transcript.dir, "promo-clip"))
    return burned_text(ctx, timed, market, video, mark)


def cut_promos(ctx: EpisodeContext, rec: Recognition, plan: MarketPlan, export_id: str,
               promo: PromoConfig | None = None, store: ArtifactStore | None = None) -> dict:
    """Every promo clip of one market's episode, published; returns the JSON written.

    Raises nothing the episode's exports would suffer from: the caller catches and notes.
    """
    promo = promo or plan.market.config.promo
    store = store or plan.store
    choice, lines = choose(ctx, rec, plan, promo, store)
    market = plan.market
    parts = {"v": PROMO_VERSION, "choice": choice.key, "mix": plan.mix.key, "segment": plan.track.key,
             "promo": promo.model_dump(), "source_subs": rec.source_subs_key, "export_id": export_id,
             "style": market.config.subtitles.model_dump(), "watermark": market.config.watermark.model_dump(),
             "mask": market.config.source_subtitles.model_dump(), "ocr": ctx.settings.ocr}
    parts["render"] = RENDER_VERSION
    if choice.model.cuts:
        made = store.get_or_make(ctx.scope, f"promo_{market.code}", parts, PromoResult,
                                 lambda d: make_clips(ctx, rec, plan, promo, export_id, choice.model, lines, d))
        result, folder = made.model, made.dir
    else:
        result, folder = PromoResult(market=market.code, profile=promo.render_profile, notes=choice.model.notes), None
    return publish(ctx, market, choice.model, result, folder)


def publish(ctx: EpisodeContext, market: Market, choice: PromoChoice, result: PromoResult,
            folder: Path | None) -> dict:
    out = ctx.export_folder(market) / "promo"
    clips = []
    for clip in result.clips:
        assert folder is not None
        video = out / f"{ctx.name}-promo-{clip.number}.mp4"
        sheet = out / f"{ctx.name}-promo-{clip.number}.png"
        atomic_copy(folder / clip.video, video)
        atomic_copy(folder / clip.sheet, sheet)
        clips.append({**clip.model_dump(), "video": str(video), "sheet": str(sheet)})
    doc = {"episode": ctx.name, "market": market.code, "language": market.config.language,
           "profile": result.profile, "notes": result.notes, "llm": choice.llm, "clips": clips,
           "lines": choice.lines, "seconds": result.seconds}
    path = out / f"{ctx.name}-promo.json"
    atomic_write_text(path, json.dumps(doc, indent=1, ensure_ascii=False))
    for note in result.notes:
        log.info("%s [%s] promo: %s", ctx.name, market.code, note)
    doc["path"] = str(path)
    return doc


def promos_for_units(ctx: EpisodeContext, rec: Recognition, done: list[tuple[UnitReport, MarketPlan]]) -> None:
    """The run's hook: each finished market whose config enables promos gets them; a failure
    is logged and recorded on the unit (``outputs["promo_error"]``), never failing it."""
    for report, plan in done:
        if not plan.market.config.promo.enabled or report.status != "ok":
            continue
        before = len(plan.store.records)
        try:
            doc = cut_promos(ctx, rec, plan, report.export_id)
            report.outputs["promo"] = doc["path"]
        except Exception as exc:  # the episode's exports are already out: a promo problem stays a note
            log.warning("%s [%s] promo cuts failed: %s", ctx.name, plan.market.code, describe(exc))
            report.outputs["promo_error"] = describe(exc)
        report.stages += stage_rows(plan.store.records[before:])


__all__ = ["cut_promos", "promos_for_units", "PromoResult", "PromoChoice", "promo_market"]


# --------------------------------------------------------------------------- on demand (locpipe promo)

#: stages a promo must find in the cache: making them here means the episode was not run first
UPSTREAM = ("transcribe", "translate", "synthesize", "separate", "mix")


def promo_episode(path: Path, settings, resources=None, *, length: float | None = None,
                  count: int | None = None) -> list[dict]:
    """``locpipe promo``: every market's clips of one episode, from the episode's cached stages.

    Returns one document per market (the published JSON, or ``{"error": ...}`` for a market
    that failed: the others still get theirs). Stages missing from the cache are made (a
    promo before the episode's run) and named in ``made_stages``.
    """
    from locpipe.core.market import plan_market
    from locpipe.core.names import episode_name, export_id_for
    from locpipe.core.recognition import probe, recognize
    from locpipe.core.resources import Resources

    name = episode_name(path, windows=settings.windows_names)
    info = probe(path, settings.work_dir)
    ctx = EpisodeContext(path, name, info.sha256, settings, resources or Resources(), lambda *_: None)
    rec = recognize(ctx, info)
    docs = []
    for market in settings.markets:
        store = ArtifactStore(settings.work_dir)
        unit = UnitReport(episode=name, market=market.code)
        update: dict = {"enabled": True}
        if length is not None:
            update["length"] = length
        if count is not None:
            update["count"] = count
        promo = PromoConfig.model_validate({**market.config.promo.model_dump(), **update})
        try:
            plan = plan_market(ctx, rec, market, unit, store)
            doc = cut_promos(ctx, rec, plan, export_id_for(ctx.sha256, market, settings.distributor), promo, store)
        except Exception as exc:  # one market's problem costs no other market its clips
            log.error("%s [%s] promo failed: %s", name, market.code, describe(exc))
            docs.append({"episode": name, "market": market.code, "error": describe(exc), "clips": []})
            continue
        made = [r.stage for r in ctx.store.records + store.records if not r.cached and r.stage in UPSTREAM]
        if made:
            log.warning("%s [%s] promo: %s were not in the cache and were made now (run the episode first to "
                        "share them)", name, market.code, ", ".join(sorted(set(made))))
        doc["made_stages"] = sorted(set(made))
        doc["stages"] = stage_rows(ctx.store.records + store.records)
        docs.append(doc)
    return docs
