"""The promo clip's render: the chosen spans of the source, masked, reframed to 9:16, with the
market's subtitles and dub, a hook caption, an end card and the visible watermark.

Built from the same pieces as the episode's export (``locpipe.render.graph``: the mask head,
frame-rate and reframe filters, the x264 settings; ``locpipe.media.ass``: the subtitle
document; ``locpipe.render.visible``: the moving mark), restricted to the spans: the source
is decoded from the first span on, ``select`` keeps only the spans' frames, ``setpts``
joins them with hard cuts, ``tpad`` holds the last frame for the end card. The audio is the
market's mix cut at the same instants with short fades at every cut. No forensic pattern is
ever blended: a promo is a public ad (a trace could only say "our upload").
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import pysubs2

from locpipe.artifacts import MediaInfo, SourceSubtitles, SubtitleEvent, SubtitleTrack
from locpipe.assets import font_env
from locpipe.config import Market, RenderProfile, SafeZone
from locpipe.media.ass import SUBTITLE_STYLE, build_ass, escape_text, subtitle_band
from locpipe.media.ffmpeg import escape_filter_value, run_ffmpeg
from locpipe.media.subtitles import write_ass
from locpipe.render.encode import glyph_fills, target_cover
from locpipe.render.graph import (
    BT709_TAGS,
    Encode,
    audio_graph,
    encoder_args,
    head_graph,
    input_matrix,
    output_fps,
    reframe_graph,
)
from locpipe.render.visible import Box, plan_visible_watermark, text_box
from locpipe.stages.promo_select import PromoCut, timeline, to_clip_time

log = logging.getLogger(__name__)

#: fade at every cut (seconds): long enough to hide the click of a hard cut, short enough
#: not to eat a syllable (cuts sit in the silence between lines anyway)
FADE = 0.04
HOOK_STYLE = "Hook"
CARD_STYLE = "EndCard"
#: hook caption and end card sizes (output px at 1080 wide, scaled with the frame width)
HOOK_SIZE = 66
CARD_SIZE = 76
HOOK_LINES = 3
#: the hook sits this far below the top of the safe zone
HOOK_TOP = 40
#: opacity of the dark veil behind the end card's text
CARD_VEIL = 0.55
RENDER_VERSION = 1


@dataclass(frozen=True)
class TextBlock:
    """A caption laid out by us (not wrapped by libass): its lines and estimated ink box."""

    lines: tuple[str, ...]
    size: int
    box: Box


@dataclass(frozen=True)
class PromoLayout:
    """Where the clip's own texts go (output px), for the render and the safe-zone QC."""

    hook: TextBlock | None
    card: TextBlock | None
    subtitle_rows: tuple[int, int]
    #: the visible watermark's text ('' when off): QC's OCR must not count it as a leak
    watermark: str = ""


@dataclass(frozen=True)
class PromoJob:
    """One promo clip: the episode's cached inputs and the cut to make of them."""

    source: MediaInfo
    #: the market with the promo's render profile (and its subtitles placed on the source band)
    market: Market
    audio_wav: Path
    track: SubtitleTrack
    cut: PromoCut
    hook_text: str
    hook_seconds: float
    cta_text: str
    episode: str
    distributor: str
    export_id: str
    target: Path
    source_subs: SourceSubtitles | None = None


# --------------------------------------------------------------------------- pure parts


def clip_track(track: SubtitleTrack, cut: PromoCut) -> SubtitleTrack:
    """The market's subtitle events on the clip's timeline (an event cut by a span edge is clipped)."""
    events = []
    for ev in track.events:
        for a, b in to_clip_time(cut, ev.start, ev.end):
            if b - a >= 0.2:
                events.append(SubtitleEvent(start=a, end=b, lines=ev.lines, cue_index=ev.cue_index))
    return track.model_copy(update={"events": events})


def wrap(text: str, size: int, width: int) -> list[str]:
    """``text`` in lines no wider than ``width`` px by the watermark's conservative estimate;
    by words where the language has spaces, else by characters."""
    words = text.split()
    spaced = len(words) > 1
    tokens = words if spaced else list(text.strip())
    lines: list[str] = []
    for tok in tokens:
        trial = (lines[-1] + (" " if spaced else "") + tok) if lines else tok
        if lines and text_box(trial, size).w <= width:
            lines[-1] = trial
        else:
            lines.append(tok)
    return lines


def text_block(text: str, size: int, zone: SafeZone, *, max_lines: int, top: int | None = None) -> TextBlock | None:
    """Lay ``text`` out inside the zone, shrinking the size until it fits ``max_lines``;
    centred horizontally, at ``top`` or centred vertically."""
    width = zone.x1 - zone.x0 - 20
    text = " ".join(text.split())
    if not text:
        return None
    for s in range(size, max(8, size // 2) - 1, -2):
        lines = wrap(text, s, width)
        boxes = [text_box(ln, s) for ln in lines]
        w, h = max(b.w for b in boxes), sum(b.h for b in boxes)
        if len(lines) <= max_lines and w <= width:
            x = (zone.x0 + zone.x1 - w) // 2
            y = top if top is not None else (zone.y0 + zone.y1 - h) // 2
            return TextBlock(tuple(lines), s, Box(x, y, w, h))
    return None


def plan_layout(market: Market, hook_text: str, cta_text: str) -> PromoLayout:
    profile, zone = market.profile, market.profile.safe_zone
    k = profile.width / 1080
    hook = text_block(hook_text, round(HOOK_SIZE * k), zone, max_lines=HOOK_LINES,
                      top=zone.y0 + round(HOOK_TOP * k)) if hook_text else None
    card = text_block(cta_text, round(CARD_SIZE * k), zone, max_lines=4) if cta_text else None
    rows = subtitle_band(market.config.subtitles, profile, market.config.subtitle_rules.max_lines)
    return PromoLayout(hook=hook, card=card, subtitle_rows=rows)


def inside_zone(box: Box, zone: SafeZone) -> bool:
    return zone.x0 <= box.x and box.x1 <= zone.x1 and zone.y0 <= box.y and box.y1 <= zone.y1


def keep_expr(cut: PromoCut, fps: float) -> str:
    """A ``select`` expression true for the frames of every span: [start, end) on the frame
    grid (half a frame of slack, so a frame exactly on a boundary goes one way only)."""
    h = 0.5 / fps
    return "+".join(f"gte(t,{a - h:.6f})*lt(t,{b - h:.6f})" for a, b, _ in timeline(cut))


def _caption_style(font: str, size: int, *, box: bool) -> pysubs2.SSAStyle:
    s = pysubs2.SSAStyle(fontname=font, fontsize=size, bold=True, primarycolor=pysubs2.Color(255, 255, 255, 0),
                         outlinecolor=pysubs2.Color(0, 0, 0, 0), backcolor=pysubs2.Color(0, 0, 0, 90),
                         borderstyle=4 if box else 1, outline=round(size * 0.2) if box else 3, shadow=0,
                         alignment=pysubs2.Alignment.TOP_CENTER, marginl=0, marginr=0, marginv=0, encoding=-1)
    if box:
        s.outlinecolor = pysubs2.Color(0, 0, 0, 255)
    return s


def _ms(t: float) -> int:
    return max(0, round(t * 1000))


def _block_event(block: TextBlock, start: float, end: float, style: str, width: int) -> pysubs2.SSAEvent:
    """Top-centre anchored at the block's top, lines escaped (only numbers go into tags)."""
    text = r"\N".join(escape_text(ln) for ln in block.lines)
    tags = rf"{{\an8\pos({width // 2},{block.box.y})}}"
    return pysubs2.SSAEvent(start=_ms(start), end=_ms(end), style=style, layer=2, text=tags + text)


def watermark(job: PromoJob):
    return plan_visible_watermark(job.market, duration=job.cut.length, distributor=job.distributor,
                                  episode=job.episode, export_id=job.export_id)


def promo_ass(job: PromoJob, layout: PromoLayout) -> pysubs2.SSAFile:
    """Subtitles on the clip's timeline + the visible mark + the hook + the end card, one document."""
    market, profile, cut = job.market, job.market.profile, job.cut
    mark = watermark(job)
    subs = build_ass(clip_track(job.track, cut), market.config.subtitles, profile, mark.layer() if mark else None)
    subs.info["Title"] = "locpipe promo"
    font = market.config.subtitles.font
    content = cut.content
    if layout.hook is not None:
        subs.styles[HOOK_STYLE] = _caption_style(font, layout.hook.size, box=True)
        subs.events.append(_block_event(layout.hook, 0.0, min(job.hook_seconds, content), HOOK_STYLE, profile.width))
    if layout.card is not None:
        subs.styles[CARD_STYLE] = _caption_style(font, layout.card.size, box=False)
        alpha = max(0, min(255, round((1 - CARD_VEIL) * 255)))
        w, h = profile.width, profile.height
        subs.events.append(pysubs2.SSAEvent(
            start=_ms(content), end=_ms(cut.length), style=CARD_STYLE, layer=0,
            text=rf"{{\an7\pos(0,0)\bord0\shad0\1c&H000000&\1a&H{alpha:02X}&\p1}}m 0 0 l {w} 0 {w} {h} 0 {h}{{\p0}}"))
        subs.events.append(_block_event(layout.card, content, cut.length, CARD_STYLE, profile.width))
    # subtitles and the hook must not run into the end card
    for ev in subs.events:
        if ev.style in (SUBTITLE_STYLE, HOOK_STYLE) and ev.end > _ms(content):
            ev.end = _ms(content)
    return subs


def promo_graph(source: MediaInfo, profile: RenderProfile, cut: PromoCut, ass_path: Path, *, matrix: str,
                source_subs: SourceSubtitles | None, fill, mask: str, cover=None) -> str:
    """Source -> [v]: spans kept and masked, joined, rate and frame of the profile, end card
    held, subtitles and captions burned; mix WAV (input 1) -> [a]."""
    fps_in = source.fps or float(profile.fps)
    parts = [head_graph(source, source_subs, "ph", fill=fill, mask=mask, keep=keep_expr(cut, fps_in), cover=cover),
             f"[ph]setpts=N/({fps_in:.6f}*TB)[pj]"]
    src = "pj"
    fps = output_fps(profile, source.fps)
    if fps:
        parts.append(f"[{src}]fps={fps:g}[pf]")
        src = "pf"
    parts.append(reframe_graph(profile, source.display_width, source.display_height, src, "pr", matrix=matrix))
    parts.append(f"[pr]tpad=stop_mode=clone:stop_duration={cut.end_card:.3f},setparams={BT709_TAGS},"
                 f"ass=filename={escape_filter_value(str(ass_path))},format=yuv420p[v]")
    parts.append(audio_graph(profile.audio_sample_rate, input_index=1, out="a"))
    return ";".join(parts)


def promo_args(source: MediaInfo, profile: RenderProfile, cut: PromoCut, audio_wav: Path, graph: str,
               target: Path) -> list[str]:
    """One ffmpeg run: seek to a second before the first span, decode, write the clip."""
    first = min(s.start for s in cut.spans)
    fps = output_fps(profile, source.fps) or source.fps or float(profile.fps)
    return ["-copyts", "-start_at_zero", "-autorotate", "-ss", f"{max(0.0, first - 1.0):.3f}", "-i", source.path,
            "-i", str(audio_wav), "-filter_complex", graph, "-map", "[v]", "-map", "[a]",
            "-t", f"{cut.length:.3f}", *encoder_args(profile, fps),
            "-c:a", "aac", "-b:a", profile.audio_bitrate, "-ar", str(profile.audio_sample_rate), "-ac", "2",
            "-map_metadata", "-1", "-map_chapters", "-1", "-movflags", "+faststart", "-f", "mp4", str(target)]


def audio_cut_graph(cut: PromoCut, sample_rate: int = 48000) -> str:
    """Mix WAV (input 0) -> [out]: each span cut out with a fade in and out, joined, the end card silent."""
    parts, labels = [], []
    for k, (a, b, _) in enumerate(timeline(cut)):
        d = b - a
        fade = min(FADE, d / 4)
        parts.append(f"[0:a:0]atrim=start={a:.6f}:end={b:.6f},asetpts=PTS-STARTPTS,"
                     f"afade=t=in:d={fade:.3f},afade=t=out:st={d - fade:.6f}:d={fade:.3f}[s{k}]")
        labels.append(f"[s{k}]")
    samples = round(cut.length * sample_rate)
    parts.append(f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1,aresample={sample_rate},"
                 f"aformat=sample_fmts=fltp:channel_layouts=stereo,apad,atrim=end_sample={samples}[out]")
    return ";".join(parts)


def cut_audio(mix_wav: Path, cut: PromoCut, dst: Path, sample_rate: int = 48000) -> Path:
    """The clip's audio before loudness (float WAV, exactly the clip's length)."""
    run_ffmpeg(["-i", str(mix_wav), "-filter_complex", audio_cut_graph(cut, sample_rate), "-map", "[out]",
                "-c:a", "pcm_f32le", str(dst)], what=f"promo audio cut of {mix_wav.name}")
    return dst


# --------------------------------------------------------------------------- the run


def render_promo(job: PromoJob) -> tuple[PromoLayout, float]:
    """Render one clip to ``job.target`` (written under a temporary name, then renamed);
    returns its layout and the ffmpeg seconds."""
    mark = watermark(job)
    layout = replace(plan_layout(job.market, job.hook_text, job.cta_text), watermark=mark.text if mark else "")
    job.target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="locpipe-promo-") as tmp:
        folder = Path(tmp)
        ass_path = write_ass(promo_ass(job, layout), folder / "promo.ass")
        policy = job.market.config.source_subtitles
        probe_encode = Encode(job.market.profile, None, folder / "x.mp4", mask=policy.mask,
                              mask_static=policy.mask_static)
        fills = glyph_fills(job.source, job.source_subs, [probe_encode], folder)
        matrix = input_matrix(job.source.color_matrix, job.source.width, job.source.height)
        graph = promo_graph(job.source, job.market.profile, job.cut, ass_path, matrix=matrix,
                            source_subs=job.source_subs, fill=fills.get(policy.mask_static), mask=policy.mask,
                            cover=target_cover(job.market) if policy.mask == "box" else None)
        partial = job.target.with_name(f".{job.target.stem}.{os.getpid()}.partial.mp4")
        started = time.monotonic()
        try:
            run_ffmpeg(promo_args(job.source, job.market.profile, job.cut, job.audio_wav, graph, partial),
                       env=font_env(), what=f"promo {job.cut.number} of {job.episode} for {job.market.code}")
            os.replace(partial, job.target)
        finally:
            partial.unlink(missing_ok=True)
    seconds = time.monotonic() - started
    log.info("promo %s (%.1f s, %d span(s)) in %.1f s", job.target, job.cut.length, len(job.cut.spans), seconds)
    return layout, seconds


def sheet_times(length: float, frames: int = 6) -> list[float]:
    """The middle of each 1/frames of the clip: the hook first, the end card last."""
    return [round((k + 0.5) * length / frames, 3) for k in range(frames)]


def contact_sheet_args(video: Path, times: list[float], dst: Path, width: int = 216) -> list[str]:
    """A PNG of the frames at ``times`` side by side (one seek per frame, one run)."""
    height = 2 * math.ceil(width * 16 / 9 / 2)
    args: list[str] = []
    for t in times:
        args += ["-ss", f"{t:.3f}", "-i", str(video)]
    scaled = "".join(f"[{i}:v:0]scale={width}:{height},setsar=1[f{i}];" for i in range(len(times)))
    graph = scaled + "".join(f"[f{i}]" for i in range(len(times))) + f"hstack=inputs={len(times)}[out]"
    return [*args, "-filter_complex", graph, "-map", "[out]", "-frames:v", "1", "-update", "1", str(dst)]


def contact_sheet(video: Path, length: float, dst: Path) -> Path:
    tmp = dst.with_name(f".{dst.stem}.tmp.png")
    run_ffmpeg(contact_sheet_args(video, sheet_times(length), tmp), what=f"contact sheet of {video.name}")
    os.replace(tmp, dst)
    return dst


__all__ = ["PromoJob", "PromoLayout", "render_promo", "cut_audio", "plan_layout", "contact_sheet", "clip_track",
           "inside_zone", "keep_expr", "RENDER_VERSION"]
