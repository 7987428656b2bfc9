"""QC of one promo clip: what a campaign manager would reject it for.

Duration within 0.1 s of the length asked, no cut inside a spoken line or word, every text
(subtitles, hook, end card) inside the platform's safe zone, loudness at the promo target,
and no Chinese in a non-CJK market's clip (its texts, and OCR of its frames where OCR runs,
through the export QC's ``source_text_readable`` machinery). Pure checks around the
measurements the caller passes in.
"""

from __future__ import annotations

from locpipe.artifacts import Cue, QCCheck, QCReport, SubtitleTrack, Transcript
from locpipe.config import LoudnessTarget, Market
from locpipe.media.ass import subtitle_margins
from locpipe.media.ffmpeg import Loudness
from locpipe.render.promo import PromoLayout, inside_zone
from locpipe.stages.promo_select import PromoCut, PromoLine, cut_points, cuts_inside_speech
from locpipe.stages.qc import DURATION_TOLERANCE, LOUDNESS_TOLERANCE, TRUE_PEAK_TOLERANCE
from locpipe.stages.translate import CJK_LANGUAGES, CJK_RE


def check_duration(measured: float, length: float) -> QCCheck:
    return QCCheck(name="promo_duration", passed=abs(measured - length) <= DURATION_TOLERANCE,
                   value=round(measured, 3), target=f"{length:g} s +- {DURATION_TOLERANCE:g}")


def check_cuts(cut: PromoCut, lines: list[PromoLine]) -> QCCheck:
    bad = cuts_inside_speech(cut, lines)
    return QCCheck(name="promo_cuts_between_lines", passed=not bad, value=len(bad),
                   target=f"0 of {len(cut_points(cut))} cut points inside a line or word",
                   detail=", ".join(f"{t:.3f}s" for t in bad))


def check_safe_zone(layout: PromoLayout, market: Market) -> QCCheck:
    """The hook and end card boxes, and the subtitle margins, inside the profile's safe zone."""
    profile, zone = market.profile, market.profile.safe_zone
    problems = []
    for name, block in (("hook", layout.hook), ("end card", layout.card)):
        if block is not None and not inside_zone(block.box, zone):
            problems.append(f"{name} box {block.box} outside {zone}")
    m = subtitle_margins(market.config.subtitles, profile)
    top, bottom = layout.subtitle_rows
    if m.left < zone.x0 or profile.width - m.right > zone.x1 or bottom > zone.y1 or top < zone.y0:
        problems.append(f"subtitle rows {top}-{bottom} / margins L{m.left} R{m.right} outside {zone}")
    return QCCheck(name="promo_safe_zone", passed=not problems, value=len(problems), target="0",
                   detail="; ".join(problems))


def check_loudness(measured: Loudness, target: LoudnessTarget) -> list[QCCheck]:
    return [
        QCCheck(name="promo_loudness", passed=abs(measured.integrated - target.integrated) <= LOUDNESS_TOLERANCE,
                value=round(measured.integrated, 2), target=f"{target.integrated:g} LUFS +- {LOUDNESS_TOLERANCE:g}"),
        QCCheck(name="promo_true_peak", passed=measured.true_peak <= target.true_peak + TRUE_PEAK_TOLERANCE,
                value=round(measured.true_peak, 2), target=f"<= {target.true_peak:g} dBTP"),
    ]


def check_cjk_text(track: SubtitleTrack, texts: list[str], market: Market) -> QCCheck | None:
    """Chinese characters in the clip's subtitles, hook or end card (None for a CJK market)."""
    if market.config.base_language in CJK_LANGUAGES:
        return None
    found = [ln for ev in track.events for ln in ev.lines if CJK_RE.search(ln)] + [t for t in texts if CJK_RE.search(t)]
    return QCCheck(name="promo_cjk_text", passed=not found, value=len(found), target="0",
                   detail="; ".join(found[:3]))


def clip_transcript(track: SubtitleTrack) -> Transcript:
    """The clip's subtitle events as a transcript on the clip's timeline: the times the
    export QC's OCR samples (``qc.source_text_check``) are read from the cues."""
    cues = [Cue(index=i, start=ev.start, end=ev.end, text=" ".join(ev.lines)) for i, ev in enumerate(track.events)]
    return Transcript(cues=cues, backend="promo", model="")


def report(episode: str, market: str, checks: list[QCCheck | None]) -> QCReport:
    done = [c for c in checks if c is not None]
    return QCReport(episode=episode, market=market, passed=all(c.passed for c in done), checks=done)
