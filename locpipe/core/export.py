"""QC of a finished render and its publication into OUT_DIR.

QC measures the real export (``locpipe.stages.qc``) and adds what only the pipeline knows:
speaker labels, what the dub was mixed over, and a trace of the forensic mark as a leaked
copy would be traced. Publication copies to temporary names and renames, so OUT_DIR never
holds a half-written export.
"""

from __future__ import annotations

from pathlib import Path

from locpipe.artifacts import QCCheck, QCReport, RenderResult
from locpipe.config import Market
from locpipe.core.context import EpisodeContext
from locpipe.core.market import MarketPlan
from locpipe.core.recognition import Recognition
from locpipe.core.store import ArtifactStore, Stored, atomic_copy, atomic_write_text
from locpipe.media.ass import build_ass
from locpipe.stages import qc


def check_export(ctx: EpisodeContext, rec: Recognition, plan: MarketPlan, rendered: Stored[RenderResult],
                 distributor: str | None, store: ArtifactStore) -> Stored[QCReport]:
    """The QC stage of one export (keyed by the render, so an unchanged export is not re-measured)."""
    market, result = plan.market, rendered.model
    video = rendered.file(result.video)

    def make(_d: Path) -> QCReport:
        report = qc.run_qc(episode=ctx.name, market=market, export_path=video, source=rec.info,
                           transcript=rec.transcript.model, translation=plan.translation.model,
                           track=plan.track.model, dub=plan.dub.model if plan.dub else None)
        return qc.with_checks(report, [
            qc.speaker_check(rec.speakers), qc.background_check(plan.mix.model),
            qc.forensic_check(video, result.forensic_payload, result.ab_member, ctx.forensic(market, distributor)),
            qc.source_subs_check(rec.onscreen, rec.transcript.model),
            *burned_text(ctx, rec, market, video, result.watermark_text)])

    return ctx.stage(market.code, "qc", {"render": rendered.key, "speakers": rec.speakers_key,
                                         "source_text": qc.SOURCE_TEXT_FRAMES}, QCReport, make, store)


def burned_text(ctx: EpisodeContext, rec: Recognition, market: Market, video: Path, own_text: str = "") -> list:
    """The export-OCR check (``qc.source_text_check``) when OCR is on and can run here."""
    if not ctx.settings.ocr:
        return []
    try:
        ocr = ctx.resources.ocr(max(1, ctx.settings.asr.threads))
    except Exception as exc:  # OCR is optional: say why the check did not run
        return [QCCheck(name="source_text_readable", passed=True, value="not checked",
                           detail=f"export OCR unavailable: {exc}")]
    return [qc.source_text_check(video, market, rec.transcript.model, rec.onscreen, ocr, own_text=own_text)]


def export_paths(folder: Path, episode: str, language: str) -> dict[str, Path]:
    """The published files of one export, by kind."""
    return {"video": folder / f"{episode}.mp4", "srt": folder / f"{episode}.{language}.srt",
            "vtt": folder / f"{episode}.{language}.vtt", "ass": folder / f"{episode}.{language}.ass",
            "qc": folder / f"{episode}.qc.json"}


def publish(ctx: EpisodeContext, market: Market, plan: MarketPlan, rendered: Stored[RenderResult],
            report: QCReport, distributor: str | None) -> dict[str, str]:
    """Copy one export into OUT_DIR/<market>/ (/<distributor>/ with several) by atomic renames."""
    ctx.progress(ctx.name, market.code, "export", "start")
    outputs = export_paths(ctx.export_folder(market, distributor), ctx.name, market.config.language)
    result = rendered.model
    atomic_copy(rendered.file(result.video), outputs["video"])
    atomic_copy(rendered.file(result.srt), outputs["srt"])
    atomic_copy(rendered.file(result.vtt), outputs["vtt"])
    # the market's styled subtitles for platforms that take ASS (no watermark layers)
    sidecar = build_ass(plan.track.model, market.config.subtitles, market.profile, None)
    atomic_write_text(outputs["ass"], sidecar.to_string("ass"))
    atomic_write_text(outputs["qc"], report.model_dump_json(indent=1))
    ctx.progress(ctx.name, market.code, "export", "done")
    return {k: str(v) for k, v in outputs.items()}
