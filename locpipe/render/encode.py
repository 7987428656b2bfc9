"""Render: one ffmpeg run from source picture + final mix to every market's deliverable MP4.

The graph comes from ``locpipe.render.graph`` (pure functions); here are the jobs, the
tasks of a shared run (prepare -> run once -> finish or abort each) and the thin shell
that runs ffmpeg. Outputs are written under temporary names and renamed by ``finish``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import MediaInfo, RenderResult, SourceSubtitles, SubtitleTrack
from locpipe.assets import font_env
from locpipe.config import Market
from locpipe.media.ass import bottom_line_rows, build_ass
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.media.subtitles import write_ass
from locpipe.render.graph import (
    ASS_NAME,
    FORENSIC_INPUT,
    VIDEO_NAME,
    Cover,
    Encode,
    Fill,
    input_matrix,
    shared_render_args,
)
from locpipe.render.mask import plan_fill, write_alpha, write_fill
from locpipe.render.visible import plan_visible_watermark
from locpipe.watermark.forensic import ForensicSpec

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class ExportJob:
    """One market's export in a shared render: its mix, subtitles, identity and folder."""

    market: Market
    audio_wav: Path
    track: SubtitleTrack
    track_dir: Path
    episode: str
    distributor: str
    export_id: str
    out_dir: Path
    forensic: ForensicSpec | None = None


@dataclass
class Prepared:
    """One task's part of a shared render: its encodes, and what to do when the run ends."""

    encodes: list[Encode]
    #: called with the run's seconds after a successful run: renames files, returns the artifact
    finish: Callable[[float], object]
    #: called when the run failed: removes partial files, withdraws issued payloads
    abort: Callable[[], None]
    #: called in every case: removes scratch inputs (pattern clips)
    cleanup: Callable[[], None] = lambda: None
    label: str = ""


def render_export(source: MediaInfo, audio_wav: Path, track: SubtitleTrack, track_dir: Path, market: Market, *,
                  episode: str, distributor: str, export_id: str, out_dir: Path,
                  source_subs: SourceSubtitles | None = None, forensic: ForensicSpec | None = None) -> RenderResult:
    """Render one market's export into ``out_dir`` (export.mp4, export.srt/.vtt, burn.ass)."""
    job = ExportJob(market, audio_wav, track, track_dir, episode, distributor, export_id, out_dir, forensic)
    return run_shared(source, [prepare_export(source, job)], source_subs=source_subs)[0]


def render_exports(source: MediaInfo, jobs: list[ExportJob], *,
                   source_subs: SourceSubtitles | None = None) -> list[RenderResult]:
    """Render every job from one decode of ``source`` in one ffmpeg run."""
    tasks = prepare_all([lambda job=job: prepare_export(source, job) for job in jobs])
    return run_shared(source, tasks, source_subs=source_subs)


def prepare_all(makers: list[Callable[[], Prepared]]) -> list[Prepared]:
    """Prepare tasks in order; if one cannot be prepared, undo the ones before it (their
    payloads were already issued) and re-raise."""
    tasks: list[Prepared] = []
    try:
        for make in makers:
            tasks.append(make())
    except BaseException:
        for t in tasks:
            t.abort()
            t.cleanup()
        raise
    return tasks


def run_shared(source: MediaInfo, tasks: list[Prepared], *, source_subs: SourceSubtitles | None = None,
               window: tuple[float, float] | None = None) -> list:
    """Run every task's encodes in one ffmpeg process (one decode, one mask; see
    shared_render_args), then finish each task; on failure abort them all and re-raise."""
    scratch = Path(tempfile.mkdtemp(prefix="locpipe-fill-"))
    try:
        encodes = [e for t in tasks for e in t.encodes]
        matrix = input_matrix(source.color_matrix, source.width, source.height)  # tag recorded at ingest
        fills = glyph_fills(source, source_subs, encodes, scratch)
        args = shared_render_args(source, encodes, matrix=matrix, source_subs=source_subs, window=window,
                                  fills=fills)
        what = ", ".join(t.label for t in tasks)
        log.info("rendering %s: %s (%d encodes from one decode)", Path(source.path).name, what, len(encodes))
        t0 = time.monotonic()
        run_ffmpeg(args, env=font_env(), what=f"render of {Path(source.path).name} for {what}")
        seconds = time.monotonic() - t0
    except BaseException:
        for t in tasks:
            t.abort()
        raise
    finally:
        for t in tasks:
            t.cleanup()
        shutil.rmtree(scratch, ignore_errors=True)
    return [t.finish(seconds) for t in tasks]


def glyph_fills(source: MediaInfo, source_subs: SourceSubtitles | None, encodes: list[Encode],
                folder: Path) -> dict[bool, Fill]:
    """The glyph fills the encodes ask for (with and/or without static texts), their mask
    bitmaps written into ``folder`` (see locpipe.render.mask)."""
    if source_subs is None:
        return {}
    fills: dict[bool, Fill] = {}
    for static in sorted({e.mask_static for e in encodes if e.mask in ("fill", "box")}):
        plan = plan_fill(source_subs, source, static=static)
        if plan is None:
            continue
        paths = write_fill(plan, folder / ("static" if static else "lines"))
        windows = plan.windows
        alpha = write_alpha(plan, folder / ("static" if static else "lines"))
        fills[static] = Fill(plan.rect, tuple((p, layer.windows) for p, layer in zip(paths, plan.layers)),
                             None if windows is None else tuple(windows), plan.work, alpha)
    return fills


def prepare_export(source: MediaInfo, job: ExportJob) -> Prepared:
    """A full export of one market for one distributor as a task of a shared render.

    With ``job.forensic`` (the pipeline passes it when the profile has
    ``forensic_watermark``) a payload is issued in the ledger here and its invisible mark
    blended into the picture; a failed run withdraws it again. The MP4 is written under a
    temporary name and renamed when the run is complete, so a killed run never leaves a
    truncated ``export.mp4`` that looks finished.
    """
    job.out_dir.mkdir(parents=True, exist_ok=True)
    profile = job.market.profile
    mark = plan_visible_watermark(job.market, duration=source.duration, distributor=job.distributor,
                                  episode=job.episode, export_id=job.export_id)
    subs = build_ass(job.track, job.market.config.subtitles, profile, mark.layer() if mark else None)
    ass_path = write_ass(subs, job.out_dir / ASS_NAME)
    partial = job.out_dir / f".{VIDEO_NAME}.{os.getpid()}.partial"
    given = _issue_forensic(job.forensic, job.market, episode=job.episode, distributor=job.distributor,
                            export_id=job.export_id, out_dir=job.out_dir)
    policy = job.market.config.source_subtitles
    encode = Encode(profile, ass_path, partial, audio_wav=job.audio_wav,
                    pattern=given[1].pattern if given else None, mask=policy.mask, mask_static=policy.mask_static,
                    cover=target_cover(job.market) if policy.mask == "box" else Cover())

    def finish(seconds: float) -> RenderResult:
        final = job.out_dir / VIDEO_NAME
        os.replace(partial, final)
        log.info("rendered %s", final)
        return RenderResult(
            video=VIDEO_NAME,
            srt=copy_sidecar(job.track_dir / job.track.srt, job.out_dir / "export.srt"),
            vtt=copy_sidecar(job.track_dir / job.track.vtt, job.out_dir / "export.vtt"),
            export_id=job.export_id,
            watermark_text=mark.text if mark else "",
            ffmpeg_seconds=round(seconds, 3),
            forensic_payload=given[0].hex if given else "",
        )

    def abort() -> None:
        partial.unlink(missing_ok=True)
        if given:
            _withdraw_forensic(job.forensic, given[0])

    def cleanup() -> None:
        if given:
            given[1].pattern.unlink(missing_ok=True)

    return Prepared([encode], finish, abort, cleanup, label=f"{job.market.code} ({profile.reframe})")


def target_cover(market: Market) -> Cover:
    """The band cover of ``mask: box``: the market's box colour, reaching the target's bottom line."""
    style, profile = market.config.subtitles, market.profile
    return Cover(style.box_colour, bottom_line_rows(style, profile), (profile.width, profile.height, profile.reframe))


def _issue_forensic(spec: ForensicSpec | None, market: Market, *, episode: str, distributor: str, export_id: str,
                    out_dir: Path):
    """Issue a payload in the ledger and write its pattern clip: (payload, graph) or None."""
    if spec is None:
        return None
    from locpipe.watermark.forensic import forensic_graph
    from locpipe.watermark.ledger import Ledger

    payload = Ledger(spec.ledger).issue(distributor=distributor, market=market.code, episode=episode,
                                        export_id=export_id, file=spec.export_file)
    graph = forensic_graph(payload, width=market.profile.width, height=market.profile.height, key=spec.key,
                           work_dir=out_dir, input_index=FORENSIC_INPUT, in_label="vpre", out_label="v")
    return payload, graph


def _withdraw_forensic(spec: ForensicSpec, payload) -> None:
    from locpipe.watermark.ledger import Ledger

    try:
        Ledger(spec.ledger).withdraw(payload)
    except Exception as exc:  # the render's own error matters more
        log.warning("could not withdraw forensic payload %s from %s: %s", payload.hex, spec.ledger, exc)


def copy_sidecar(src: Path, dst: Path) -> str:
    """Copy a subtitle sidecar next to the video; '' when the track has none."""
    if not src.is_file():
        log.info("no %s beside the subtitle track; export has no %s", src.name, dst.suffix)
        return ""
    shutil.copyfile(src, dst)
    return dst.name
