"""Render: one ffmpeg run from source picture + final mix to a market's deliverable MP4.

The video is reframed to the render profile's frame (crop, blurred padding or letterbox),
its rate kept or conformed, and subtitles plus the visible watermark burned in one libass
pass; the audio is the already-mixed, loudness-normalized WAV, padded or trimmed so the
export is exactly as long as the source (a dub that ends early must not shorten the
episode). The filtergraph and argument list are built by pure functions, tested directly;
running ffmpeg is a thin shell around them.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path

from locpipe.artifacts import MediaInfo, RenderResult, SourceSubtitles, SubtitleTrack
from locpipe.assets import font_env
from locpipe.config import Market, RenderProfile
from locpipe.media.ass import build_ass, write_ass
from locpipe.media.ffmpeg import escape_filter_value, run_ffmpeg
from locpipe.stages.watermark_visible import plan_visible_watermark
from locpipe.watermark.forensic import ForensicGraph, ForensicSpec

log = logging.getLogger(__name__)

#: frame rates delivered as they are under the ``keep-standard`` policy
STANDARD_RATES = (24000 / 1001, 24.0, 25.0, 30000 / 1001, 30.0)
FPS_TOLERANCE = 0.01
#: the blurred background is made at 1/BLUR_DOWNSCALE of the frame: same look, a fraction
#: of the cost of blurring 1080x1920 directly
BLUR_DOWNSCALE = 4
BLUR_RADIUS = 12
#: scaler names of the YCbCr matrices a source may be tagged with (AVColorSpace codes)
MATRICES = {1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 9: "bt2020nc"}
#: everything delivered is tagged BT.709 (and converted to it where the source is not)
BT709_TAGS = "range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709"
#: the source-subtitle mask: a Gaussian blur this strong leaves 40-50 px CJK glyphs as
#: soft smudges, and a slight darkening keeps our white subtitles readable over it
MASK_SIGMA = 24
MASK_DARKEN = -0.12
ASS_NAME = "burn.ass"
#: ffmpeg input number of the forensic pattern clip (after the source and the mix)
FORENSIC_INPUT = 2
VIDEO_NAME = "export.mp4"


# --------------------------------------------------------------------------- pure parts


def output_fps(profile: RenderProfile, source_fps: float) -> float | None:
    """The rate to conform to, or None to keep the source's own (standard) rate."""
    if profile.fps_policy == "keep-standard" and any(abs(source_fps - r) <= FPS_TOLERANCE for r in STANDARD_RATES):
        return None
    return float(profile.fps)


def gop_frames(fps: float) -> int:
    """Half a second of frames: a closed GOP that short lets players and platforms seek
    and splice cleanly (and is what the app/social ingest specs ask for)."""
    return max(1, int(fps / 2 + 0.5))


def _even(x: float) -> int:
    return max(2, int(round(x / 2)) * 2)


def scaled_size(dw: int, dh: int, width: int, height: int, *, cover: bool) -> tuple[int, int]:
    """Even size of a ``dw`` x ``dh`` picture scaled to cover (or fit inside) the frame,
    keeping its display aspect."""
    k = max(width / dw, height / dh) if cover else min(width / dw, height / dh)
    w, h = _even(dw * k), _even(dh * k)
    if cover:
        return max(w, width), max(h, height)
    return min(w, width), min(h, height)


def input_matrix(tagged: int | None, width: int, height: int) -> str:
    """YCbCr matrix the source was encoded with: its tag, else what players assume for an
    untagged file (HD: BT.709, SD: BT.601). Left to ffmpeg, an untagged source is read as
    BT.601 and converted, which shifts the colours of every untagged HD episode."""
    if tagged in MATRICES:
        return MATRICES[tagged]
    return "bt709" if width >= 1280 or height > 576 else "smpte170m"


def _scale(w: int, h: int, matrix: str, flags: str = "lanczos") -> str:
    # the target size comes from the *display* size, so anamorphic pixels are squared here
    # and setsar=1 records that; out_range=tv turns full-range phone video into TV range
    return (f"scale={w}:{h}:flags={flags}:in_color_matrix={matrix}:out_color_matrix=bt709:out_range=tv,"
            "setsar=1")


def reframe_graph(profile: RenderProfile, dw: int, dh: int, src: str, out: str, *, matrix: str = "bt709") -> str:
    """Filtergraph from label ``src`` to ``out`` filling the profile's frame.

    ``dw``/``dh`` are the display size after rotation (ffmpeg autorotates while decoding)
    and sample aspect ratio, i.e. what the viewer sees; ``matrix`` is the source's YCbCr
    matrix (see input_matrix), converted to BT.709 by the same scaler.
    """
    W, H = profile.width, profile.height
    fit = scaled_size(dw, dh, W, H, cover=False)
    if profile.reframe == "crop" or fit == (W, H):
        cw, ch = scaled_size(dw, dh, W, H, cover=True)
        crop = f",crop={W}:{H}:{(cw - W) // 2}:{(ch - H) // 2}" if (cw, ch) != (W, H) else ""
        return f"[{src}]{_scale(cw, ch, matrix)}{crop}[{out}]"
    fw, fh = fit
    x, y = (W - fw) // 2, (H - fh) // 2
    if profile.reframe == "letterbox":
        return f"[{src}]{_scale(fw, fh, matrix)},pad={W}:{H}:{x}:{y}:color=black[{out}]"
    bw, bh = _even(W / BLUR_DOWNSCALE), _even(H / BLUR_DOWNSCALE)
    cw, ch = scaled_size(dw, dh, bw, bh, cover=True)
    return (
        f"[{src}]split=2[bg][fg];"
        f"[bg]{_scale(cw, ch, matrix, 'fast_bilinear')},crop={bw}:{bh}:{(cw - bw) // 2}:{(ch - bh) // 2},"
        f"boxblur={BLUR_RADIUS}:2,{_scale(W, H, 'bt709', 'bilinear')}[bgb];"
        f"[fg]{_scale(fw, fh, matrix)}[fgs];"
        f"[bgb][fgs]overlay={x}:{y}[{out}]"
    )


def mask_windows(source_subs: SourceSubtitles, *, duration: float) -> list[tuple[float, float]]:
    """Times to mask: the detected intervals widened by half a sample period more (they
    are centred estimates, good to +-half a period; blurring a moment too long costs
    nothing, a flash of Chinese text does), merged where they touch."""
    guard = 0.5 / source_subs.sample_fps
    spans = sorted((max(0.0, iv.start - guard), min(duration, iv.end + guard)) for iv in source_subs.intervals)
    merged: list[tuple[float, float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def enable_expr(windows: list[tuple[float, float]]) -> str:
    """A timeline ``enable`` expression true inside any window: ``between(t,a,b)+...``.
    (Escaped by the caller: it is full of commas.)"""
    return "+".join(f"between(t,{a:.3f},{b:.3f})" for a, b in windows)


def mask_rect(source_subs: SourceSubtitles, source: MediaInfo) -> tuple[int, int, int, int]:
    """The band in the decoded (autorotated, unscaled) picture of ``source``, even-aligned
    outwards (4:2:0 chroma) and clipped to the frame.

    Detection may have run on another rendition of the episode (a proxy): the rect is
    scaled from its frame size to this source's.
    """
    fw, fh = (source.height, source.width) if source.rotation in (90, 270) else (source.width, source.height)
    x, y, w, h = source_subs.band
    kx, ky = fw / source_subs.frame_width, fh / source_subs.frame_height
    x0, y0 = int(x * kx) // 2 * 2, int(y * ky) // 2 * 2
    x1 = min(fw, -(-int(round((x + w) * kx)) // 2) * 2)
    y1 = min(fh, -(-int(round((y + h) * ky)) // 2) * 2)
    return x0, y0, x1 - x0, y1 - y0


def mask_graph(source_subs: SourceSubtitles, source: MediaInfo, src: str, out: str) -> str | None:
    """Filtergraph from ``src`` to ``out`` blurring the source-subtitle band while text is
    on screen; None when there is nothing to mask.

    Applied before reframing, in source coordinates: the band then lines up whatever the
    reframe does. The blurred copy of the band is always computed (a small crop) and
    overlaid only inside the windows.
    """
    if not source_subs.found or not source_subs.band or not source_subs.intervals:
        return None
    x, y, w, h = mask_rect(source_subs, source)
    if w < 4 or h < 4:
        return None
    enable = escape_filter_value(enable_expr(mask_windows(source_subs, duration=source.duration)))
    return (f"[{src}]split=2[msrc][mband];"
            f"[mband]crop={w}:{h}:{x}:{y},gblur=sigma={MASK_SIGMA}:steps=3,eq=brightness={MASK_DARKEN}[mblur];"
            f"[msrc][mblur]overlay={x}:{y}:enable={enable}[{out}]")


def video_graph(source: MediaInfo, profile: RenderProfile, ass_path: Path, *, matrix: str = "bt709",
                source_subs: SourceSubtitles | None = None, forensic: ForensicGraph | None = None) -> str:
    """Source video -> [v]: source-subtitle mask, rate, reframe, BT.709 tags, burned ASS, 4:2:0,
    and last (on the finished picture, right before the encoder) the forensic mark.

    The tags are set on the frames, not only as encoder options: ffmpeg takes primaries
    and transfer from the frames and would write "unknown" for an untagged source.
    """
    fps = output_fps(profile, source.fps)
    mask = mask_graph(source_subs, source, "0:v:0", "vm") if source_subs else None
    first = "vm" if mask else "0:v:0"
    head = (f"{mask};" if mask else "") + (f"[{first}]fps={fps:g}[vf];" if fps else "")
    src = "vf" if fps else first
    reframe = reframe_graph(profile, source.display_width, source.display_height, src, "vr", matrix=matrix)
    burn = f"ass=filename={escape_filter_value(str(ass_path))}"
    if forensic is not None:
        return f"{head}{reframe};[vr]setparams={BT709_TAGS},{burn},format=yuv420p[vpre];{forensic.fragment}"
    return f"{head}{reframe};[vr]setparams={BT709_TAGS},{burn},format=yuv420p[v]"


def audio_graph(sample_rate: int) -> str:
    """Mix WAV -> [a]: resampled, stereo, and padded with silence without end (``-t`` cuts
    it at the source's duration, so the audio never shortens the video)."""
    return (f"[1:a:0]aresample={sample_rate},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"apad[a]")


def ffmpeg_args(source: MediaInfo, audio_wav: Path, ass_path: Path, profile: RenderProfile,
                out_path: Path, *, matrix: str = "bt709", source_subs: SourceSubtitles | None = None,
                forensic: ForensicGraph | None = None) -> list[str]:
    """The full ffmpeg argument list (binary and global flags are added by run_ffmpeg).

    ``forensic`` (from forensic_graph with ``input_index=FORENSIC_INPUT``, ``in_label="vpre"``,
    ``out_label="v"``) adds the pattern clip as the third input and blends it in last.
    """
    fps = output_fps(profile, source.fps) or source.fps
    gop = str(gop_frames(fps))
    video = video_graph(source, profile, ass_path, matrix=matrix, source_subs=source_subs, forensic=forensic)
    graph = f"{video};{audio_graph(profile.audio_sample_rate)}"
    return [
        "-autorotate", "-i", source.path,
        "-i", str(audio_wav),
        *(forensic.input_args if forensic else []),
        "-filter_complex", graph,
        "-map", "[v]", "-map", "[a]",
        "-t", f"{source.duration:.3f}",
        "-c:v", profile.video_codec, "-profile:v", "high", "-pix_fmt", "yuv420p",
        "-preset", profile.preset, "-crf", str(profile.crf),
        "-maxrate", profile.maxrate, "-bufsize", profile.bufsize,
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-flags", "+cgop",
        "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
        "-c:a", "aac", "-b:a", profile.audio_bitrate, "-ar", str(profile.audio_sample_rate), "-ac", "2",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-movflags", "+faststart",
        "-f", "mp4", str(out_path),
    ]


# --------------------------------------------------------------------------- the run


def render_export(source: MediaInfo, audio_wav: Path, track: SubtitleTrack, track_dir: Path, market: Market, *,
                  episode: str, distributor: str, export_id: str, out_dir: Path,
                  source_subs: SourceSubtitles | None = None, forensic: ForensicSpec | None = None) -> RenderResult:
    """Render one market's export into ``out_dir`` (export.mp4, export.srt/.vtt, burn.ass).

    With ``source_subs`` (see stages.source_subs) the source's burned-in subtitles are
    blurred while they show, so our subtitles do not land on top of readable Chinese.
    With ``forensic`` (the pipeline passes it when the profile has ``forensic_watermark``)
    a payload is issued in the ledger and its invisible mark blended into the picture; a
    failed render withdraws the payload again.

    The MP4 is written under a temporary name and renamed when complete, so a killed run
    never leaves a truncated ``export.mp4`` that looks finished.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    profile = market.profile
    mark = plan_visible_watermark(market, duration=source.duration, distributor=distributor, episode=episode,
                                  export_id=export_id)
    subs = build_ass(track, market.config.subtitles, profile, mark.layer() if mark else None)
    ass_path = write_ass(subs, out_dir / ASS_NAME)
    final = out_dir / VIDEO_NAME
    partial = out_dir / f".{VIDEO_NAME}.{os.getpid()}.partial"
    matrix = input_matrix(tagged_matrix(Path(source.path)), source.width, source.height)
    issued = _issue_forensic(forensic, market, episode=episode, distributor=distributor, export_id=export_id,
                             out_dir=out_dir)
    graph = issued[1] if issued else None
    args = ffmpeg_args(source, audio_wav, ass_path, profile, partial, matrix=matrix, source_subs=source_subs,
                       forensic=graph)
    log.info("rendering %s for %s (%s, %dx%d)", episode, market.code, profile.reframe, profile.width, profile.height)
    t0 = time.monotonic()
    try:
        run_ffmpeg(args, env=font_env(), what=f"render of {episode} for {market.code}")
    except BaseException:
        partial.unlink(missing_ok=True)
        if issued:
            _withdraw_forensic(forensic, issued[0])
        raise
    finally:
        if graph:
            graph.pattern.unlink(missing_ok=True)
    seconds = time.monotonic() - t0
    os.replace(partial, final)
    log.info("rendered %s in %.1f s", final, seconds)
    return RenderResult(
        video=VIDEO_NAME,
        srt=_copy_sidecar(track_dir / track.srt, out_dir / "export.srt"),
        vtt=_copy_sidecar(track_dir / track.vtt, out_dir / "export.vtt"),
        export_id=export_id,
        watermark_text=mark.text if mark else "",
        ffmpeg_seconds=round(seconds, 3),
        forensic_payload=issued[0].hex if issued else "",
    )


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


def tagged_matrix(path: Path) -> int | None:
    """The source's YCbCr matrix tag (AVColorSpace code), None if untagged or unreadable.

    (MediaInfo does not record it yet, so it is read here; a header read, no decoding.)
    """
    import av

    try:
        with av.open(str(path)) as container:
            code = int(container.streams.video[0].codec_context.colorspace or 2)
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as exc:
        log.warning("cannot read the colour tags of %s (%s); assuming untagged", path, exc)
        return None
    return None if code == 2 else code


def _copy_sidecar(src: Path, dst: Path) -> str:
    """Copy a subtitle sidecar next to the video; '' when the track has none."""
    if not src.is_file():
        log.info("no %s beside the subtitle track; export has no %s", src.name, dst.suffix)
        return ""
    shutil.copyfile(src, dst)
    return dst.name
