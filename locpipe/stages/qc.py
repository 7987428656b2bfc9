"""QC: measure the finished export and check it against the market's targets.

Checks read the real output file (probe, loudness) rather than trusting what earlier stages
meant to produce, and gather the figures earlier stages recorded (subtitle violations,
CJK leaks, dub fit, dropped ASR segments) into one report per (episode, market).
"""

from __future__ import annotations

from pathlib import Path

from locpipe.artifacts import DubTrack, MediaInfo, QCCheck, QCReport, SubtitleTrack, Transcript, Translation
from locpipe.config import Market
from locpipe.media.ffmpeg import loudness_series, measure_loudness
from locpipe.media.probe import probe
from locpipe.stages.segment import text_width
from locpipe.stages.translate import CJK_LANGUAGES, CJK_RE, translation_checks

DURATION_TOLERANCE = 0.1
LOUDNESS_TOLERANCE = 1.0
TRUE_PEAK_TOLERANCE = 0.3


def check_format(export: MediaInfo, source: MediaInfo, market: Market) -> list[QCCheck]:
    p = market.profile
    diff = abs(export.duration - source.duration)
    return [
        QCCheck(name="resolution", passed=(export.width, export.height) == (p.width, p.height),
                value=f"{export.width}x{export.height}", target=f"{p.width}x{p.height}"),
        QCCheck(name="duration_match", passed=diff <= DURATION_TOLERANCE, value=round(diff, 3),
                target=f"<= {DURATION_TOLERANCE} s from source {source.duration:.2f} s"),
        QCCheck(name="codecs", passed=export.video_codec == "h264" and export.audio_codec == "aac",
                value=f"{export.video_codec}/{export.audio_codec}", target="h264/aac"),
    ]


def check_loudness(integrated: float, true_peak: float, market: Market) -> list[QCCheck]:
    t = market.config.loudness
    return [
        QCCheck(name="loudness", passed=abs(integrated - t.integrated) <= LOUDNESS_TOLERANCE,
                value=round(integrated, 2), target=f"{t.integrated} ± {LOUDNESS_TOLERANCE} LUFS"),
        QCCheck(name="true_peak", passed=true_peak <= t.true_peak + TRUE_PEAK_TOLERANCE,
                value=round(true_peak, 2), target=f"<= {t.true_peak} dBTP"),
    ]


def check_subtitles(track: SubtitleTrack, translation: Translation) -> list[QCCheck]:
    base = track.language.split("-")[0].lower()
    leaks = 0 if base in CJK_LANGUAGES else sum(
        1 for ev in track.events for line in ev.lines if CJK_RE.search(line))
    untranslated = sum(1 for c in translation.cues if not c.text.strip())
    return [
        QCCheck(name="subtitle_violations", passed=not track.violations, value=len(track.violations), target="0",
                detail="; ".join(f"#{v['event']}: {', '.join(v['problems'])}" for v in track.violations[:5])),
        QCCheck(name="cjk_leaks", passed=leaks == 0, value=leaks, target="0"),
        QCCheck(name="untranslated_lines", passed=untranslated == 0, value=untranslated, target="0",
                detail=f"backend {translation.backend}"),
    ]


def check_dub(dub: DubTrack | None) -> list[QCCheck]:
    if dub is None:
        return []
    spoken = [ln for ln in dub.lines if ln.outcome != "skipped"]
    fit = sum(1 for ln in spoken if ln.outcome in ("fit", "stretched"))
    share = fit / len(spoken) if spoken else 1.0
    unspoken = [ln for ln in dub.lines if ln.note]
    rewritten = [ln for ln in dub.lines if ln.rewritten_from]
    return [
        QCCheck(name="dub_rewrites", passed=True, value=len(rewritten),
                detail="; ".join(f"cue {ln.cue_index} ({ln.rewritten_by}): {ln.rewritten_from!r} -> {ln.text!r}"
                                 for ln in rewritten[:5])),
        QCCheck(name="dub_fit", passed=share >= 0.98, value=round(share, 3), target=">= 0.98",
                detail=f"{len(spoken) - fit} overflow line(s); voice {dub.voice}"),
        QCCheck(name="dub_unspeakable_lines", passed=not unspoken, value=len(unspoken), target="0",
                detail="; ".join(f"cue {ln.cue_index}: {ln.note}" for ln in unspoken[:5])),
        *check_dub_voice(dub),
        *check_dub_cast(dub),
    ]


def check_dub_cast(dub: DubTrack) -> list[QCCheck]:
    """Characters of the series must sound like different people: fails when the cast ran out of voices."""
    if not dub.voices:  # one voice for every line (no speaker labels): nothing to compare
        return []
    shared = [n for n in dub.cast_notes if " share the voice " in n]
    cast = "; ".join(f"{label}: {voice}" for label, voice in sorted(dub.voices.items()))
    return [QCCheck(name="dub_cast", passed=not shared, value=len(set(dub.voices.values())),
                    target="a distinct voice per character", detail="; ".join([cast, *dub.cast_notes]))]


def check_dub_voice(dub: DubTrack) -> list[QCCheck]:
    """A robotic fallback voice ("low") or no voice at all ("none") must not ship unnoticed."""
    if not dub.quality:  # artifacts from before voices carried a quality label
        return []
    labels = {"low": "low quality: robotic fallback voice", "none": "no dub: no voice speaks the language",
              "accented": "accented: the voice was not trained on this language"}
    detail = "; ".join([labels.get(dub.quality, dub.quality), *dub.notes])
    return [QCCheck(name="dub_voice_quality", passed=dub.quality not in ("low", "none"), value=dub.quality,
                    target="natural or accented", detail=f"{dub.backend}:{dub.voice} - {detail}")]


def check_transcript(transcript: Transcript) -> list[QCCheck]:
    low = sum(1 for c in transcript.cues if c.confidence < 0.5)
    return [
        QCCheck(name="dialogue_found", passed=bool(transcript.cues), value=len(transcript.cues), target="> 0 cues",
                detail="no speech recognized: export has no subtitles" if not transcript.cues else ""),
        QCCheck(name="asr_dropped_segments", passed=True, value=len(transcript.dropped),
                detail="; ".join(f"{d['start']:.1f}s {d['reason']}" for d in transcript.dropped[:5])),
        QCCheck(name="asr_low_confidence_cues", passed=True, value=low),
    ]


def run_qc(*, episode: str, market: Market, export_path: Path, source: MediaInfo, transcript: Transcript,
           translation: Translation, track: SubtitleTrack, dub: DubTrack | None) -> QCReport:
    export = probe(export_path)
    loud = measure_loudness(export_path)
    checks = (
        check_format(export, source, market)
        + check_loudness(loud.integrated, loud.true_peak, market)
        + check_transcript(transcript)
        + check_subtitles(track, translation)
        + translation_checks(translation)
        + check_dub(dub)
    )
    return QCReport(episode=episode, market=market.code, passed=all(c.passed for c in checks), checks=checks,
                    series=chart_series(track, dub, loudness_series(export_path)))


def chart_series(track: SubtitleTrack, dub: DubTrack | None, loudness: list[float]) -> dict[str, list[float]]:
    spaced = track.language.split("-")[0].lower() not in ("ja", "zh")
    cps = []
    for ev in track.events:
        text = (" " if spaced else "").join(ev.lines)
        cps.append(round(text_width(text, track.language) / max(ev.end - ev.start, 0.01), 2))
    series = {"cps": cps, "loudness_momentary": [round(v, 1) for v in loudness]}
    if dub is not None:
        series["dub_stretch"] = [ln.stretch for ln in dub.lines if ln.outcome != "skipped"]
    return series


# --------------------------------------------------------------------------- burned-in source text


#: export frames OCR'd for source-language text (spread over the cues)
SOURCE_TEXT_FRAMES = 8


def is_own_text(read: str, own: str) -> bool:
    """OCR of text the export itself carries (the visible watermark, which names the episode, so
    a Chinese file name shows there): spaces ignored, a partial read of the mark counts too."""
    from locpipe.stages.source_subs import text_distance

    a, b = "".join(read.split()), "".join(own.split())
    return bool(a and b) and (a in b or text_distance(a, b) <= 0.34)


def source_text_check(export_path: Path, market: Market, transcript: Transcript, onscreen, ocr, *,
                      own_text: str = "") -> QCCheck | None:
    """Read the export as a viewer would: OCR frames in the middle of cues and fail when
    Chinese dialogue is still readable (for a non-CJK market). This checks the mask itself,
    so a subtitle style the detector missed can never pass QC unseen. Static texts the
    market chose to keep (logo, title) and the export's own watermark are not counted. None for CJK markets or without
    cues."""
    from locpipe.media.frames import luma_at
    from locpipe.stages.source_subs import qc_times, readable_leaks

    if market.config.base_language in CJK_LANGUAGES or not transcript.cues:
        return None
    times = qc_times([(c.start, c.end) for c in transcript.cues], SOURCE_TEXT_FRAMES)
    keep = [] if onscreen is None or market.config.source_subtitles.mask_static else [s.text for s in onscreen.static]
    leaks = [lk for lk in readable_leaks(luma_at(export_path, times, short_side=540), ocr, static=keep)
             if not is_own_text(lk.text, own_text)]
    frames_hit = sorted({lk.t for lk in leaks})
    return QCCheck(name="source_text_readable", passed=not leaks, value=len(frames_hit),
                   target=f"0 of {len(times)} sampled cue frames with readable Chinese",
                   detail="; ".join(f"{lk.t:.2f}s {lk.text!r} ({lk.score})" for lk in leaks[:5]))


def source_subs_check(onscreen, transcript: Transcript) -> QCCheck | None:
    """Informational: what the burned-in subtitle detector found. When it found none but
    speech was transcribed, say so: the episode may carry a style the detector missed
    (``--subtitle-band`` forces a band), and the transcript is ASR alone."""
    if onscreen is None:
        return None
    if onscreen.found:
        detail = f"band {onscreen.band}{' (given)' if onscreen.band_given else ''}, {len(onscreen.intervals)} lines"
        if onscreen.static:
            detail += "; static text: " + ", ".join(s.text for s in onscreen.static)
        return QCCheck(name="source_subtitles", passed=True, value="found", detail=detail)
    heard = len(transcript.cues)
    detail = (f"warning: OCR found no burned-in subtitles but {heard} cue(s) of speech were transcribed: "
              "the transcript is speech recognition alone; if the source is hard-subbed, give the band "
              "with --subtitle-band TOP:BOTTOM") if heard else "no burned-in subtitles and no speech"
    return QCCheck(name="source_subtitles", passed=True, value="none found", detail=detail)


# --------------------------------------------------------------------------- checks from outside the export


def with_checks(report: QCReport, checks: list[QCCheck | None]) -> QCReport:
    """``report`` with ``checks`` added (None entries skipped); ``passed`` follows every check."""
    extra = [c for c in checks if c is not None]
    if not extra:
        return report
    all_checks = [*report.checks, *extra]
    return report.model_copy(update={"checks": all_checks, "passed": report.passed and all(c.passed for c in extra)})


def speaker_check(labels) -> QCCheck | None:
    """The informational speaker-label check (never fails QC): how many speakers, or why none."""
    if labels is None:
        return None
    detail = "; ".join(labels.notes) or ", ".join(f"{s.label}: {s.cues} cue(s)" for s in labels.speakers)
    return QCCheck(name="speaker_labels", passed=True, value=len(labels.speakers),
                   target="labelled by voice" if labels.available else "unavailable", detail=detail)


def background_check(mix) -> QCCheck | None:
    """The informational check saying what the dub was mixed over (never fails QC).

    "separated": the original's accompaniment (music and effects kept at full level);
    "ducked": the whole original turned down under the dub, with the reason.
    """
    if mix.method == "original":
        return None
    value = "separated" if mix.method == "separated" else "ducked"
    detail = ("dub mixed over the original's separated music and effects (Spleeter 2-stem)" if value == "separated"
              else f"original ducked under the dub: {mix.background_note or 'no separated accompaniment'}")
    return QCCheck(name="background", passed=True, value=value, target="separated", detail=detail)


def forensic_check(export: Path, issued_hex: str, ab_member: int | None, spec) -> QCCheck | None:
    """Trace the export like a leaked copy: the mark must decode to the payload the ledger
    issued, and an A/B copy to its own distributor of the batch.

    An export whose mark does not read back would be untraceable when it leaks; that fails
    QC rather than being discovered on a pirate site.
    """
    if spec is None:
        return None
    from locpipe.watermark.trace import trace_report

    traced, found = trace_report(export, spec.ledger, fast=True)  # our own export: reference frames suffice
    decoded = (traced.get("payload") or {}).get("hex", "") if found else ""
    conf = traced["confidence"]
    passed = bool(issued_hex) and decoded == issued_hex
    target = f"payload {issued_hex or '(none issued)'} read back"
    detail = (f"decoded {decoded or 'nothing'}; statistic {conf['statistic']:.1f}, "
              f"{conf['coded_bit_errors']} coded bit error(s), traced in {traced['seconds']:.1f} s")
    if ab_member is not None:
        ab = traced.get("ab") or {}
        passed = passed and traced.get("distributor_determined") and ab.get("index") == ab_member
        target += f" and A/B member {ab_member} determined"
        detail += (f"; A/B member {ab.get('index')} (score {ab.get('score')}, threshold {ab.get('threshold')}, "
                   f"null max {ab.get('null_max')})")
    return QCCheck(name="forensic_watermark", passed=bool(passed), value=round(conf["statistic"], 1),
                   target=target, detail=detail)
