"""Render graphs: the pure functions that build an export's ffmpeg filtergraph and arguments.

The video is reframed to the render profile's frame (crop, blurred padding or letterbox),
its rate kept or conformed, and subtitles plus the visible watermark burned in one libass
pass; the audio is the already-mixed, loudness-normalized WAV, padded or trimmed so the
export is exactly as long as the source (a dub that ends early must not shorten the
episode). The filtergraph and argument list are built by pure functions, tested directly;
running ffmpeg is a thin shell around them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import MediaInfo, SourceSubtitles
from locpipe.config import RenderProfile
from locpipe.media.ffmpeg import escape_filter_value
from locpipe.watermark.forensic import ForensicGraph

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


@dataclass(frozen=True)
class Fill:
    """The glyph fill of a render (``locpipe.render.mask.plan_fill``): the crop it works
    on and its ``removelogo`` passes as (bitmap file, windows; no windows: always on)."""

    rect: tuple[int, int, int, int]
    passes: tuple[tuple[Path, tuple[tuple[float, float], ...]], ...]
    #: when any pass is on (None: always)
    windows: tuple[tuple[float, float], ...] | None
    #: the size the crop is filled at (scaled down, then back up: see render.mask)
    work: tuple[int, int] | None = None
    #: grey image (crop-sized): where the filled crop replaces the picture
    alpha: Path | None = None


def fill_graph(fill: Fill, src: str, out: str) -> str:
    """Filtergraph from ``src`` to ``out`` removing the glyphs: the crop around the band goes
    through one ``removelogo`` per line, each enabled only while its line shows, and is laid
    back over the picture (only while some pass is on: elsewhere the frame is untouched)."""
    x, y, w, h = fill.rect
    passes = []
    for path, windows in fill.passes:
        enable = f":enable={escape_filter_value(enable_expr(list(windows)))}" if windows else ""
        passes.append(f"removelogo=filename={escape_filter_value(str(path))}{enable}")
    over = f":enable={escape_filter_value(enable_expr(list(fill.windows)))}" if fill.windows else ""
    down = up = ""
    if fill.work and fill.work != (w, h):
        down, up = f"scale={fill.work[0]}:{fill.work[1]}:flags=area,", f",scale={w}:{h}:flags=bicubic"
    graph = f"[{src}]split=2[fsrc][fband];[fband]crop={w}:{h}:{x}:{y},{down}{','.join(passes)}{up}"
    if fill.alpha is not None:  # a still image, looped: alphamerge takes its latest frame
        graph += (f",format=yuva420p[fpart];movie=filename={escape_filter_value(str(fill.alpha))},"
                  "loop=loop=-1:size=1:start=0,format=gray,setpts=N/30/TB[falpha];"
                  "[fpart][falpha]alphamerge=shortest=1")
    return graph + f"[ffill];[fsrc][ffill]overlay={x}:{y}{over}[{out}]"


@dataclass(frozen=True)
class Cover:
    """The box laid over the source band with ``mask="box"``: the market's subtitle box colour
    and the export rows of its target line's box, which the cover reaches up to so the two
    read as one bar (the line may sit above the band: it stays in the safe zone)."""

    colour: str = "#000000"
    #: (top, bottom) rows of the export frame the cover must also span
    rows: tuple[int, int] | None = None
    #: the export frame those rows are in: (width, height, reframe)
    frame: tuple[int, int, str] | None = None


def cover_graph(source_subs: SourceSubtitles, source: MediaInfo, src: str, out: str, cover: Cover) -> str | None:
    """An opaque box over the source lines' extent (locpipe.render.mask.cover_rect) while a
    line shows; None without line boxes."""
    from locpipe.render.mask import cover_rect

    rect = cover_rect(source_subs, source, cover.rows, cover.frame)
    if rect is None:
        return None
    x, y, w, h = rect
    enable = escape_filter_value(enable_expr(mask_windows(source_subs, duration=source.duration)))
    return (f"[{src}]drawbox=x={x}:y={y}:w={w}:h={h}:color=0x{cover.colour.lstrip('#')}@1:t=fill:enable={enable}"
            f"[{out}]")


def head_graph(source: MediaInfo, source_subs: SourceSubtitles | None, out: str,
               window: tuple[float, float] | None = None, *, fill: Fill | None = None,
               mask: str = "fill", keep: str | None = None, cover: Cover | None = None) -> str:
    """Source video -> [out]: the part every output shares (one decode, one mask).

    ``mask``: "fill" removes the glyphs with ``fill`` (falling back to the blurred band
    when there is no fill, e.g. an artifact from before glyph masks), "box" fills them and
    then lays an opaque box (``cover``) over the lines' extent while one shows (the
    target subtitle's own box sits on it: see locpipe.render.mask.place_subtitles), "blur"
    blurs the band, "none" leaves the picture. ``window`` keeps only [start, end) seconds with their
    original timestamps (a window re-render must land on the same frames as the full
    encode it patches). ``keep``: a ``select`` expression of the frames to keep, also with
    their original timestamps (a promo's spans: the mask then only works on those)."""
    src = "0:v:0"
    parts = []
    if window:
        parts.append(f"[0:v:0]trim=start={window[0]:.6f}:end={window[1]:.6f}[vt]")
        src = "vt"
    elif keep:
        parts.append(f"[0:v:0]select={escape_filter_value(keep)}[vt]")
        src = "vt"
    if mask == "none" or not source_subs:
        mask_part = None
    elif mask in ("fill", "box") and fill is not None:
        mask_part = fill_graph(fill, src, out if mask == "fill" else "fcov")
        if mask == "box":
            mask_part += ";" + (cover_graph(source_subs, source, "fcov", out, cover or Cover())
                                or f"[fcov]null[{out}]")
    else:
        mask_part = mask_graph(source_subs, source, src, out)
    if mask_part:
        parts.append(mask_part)
    else:
        parts.append(f"[{src}]null[{out}]")
    return ";".join(parts)


def _fan_out(src: str, labels: list[str]) -> str:
    """``[src]split=n[l0][l1]...`` (or a plain rename for one label)."""
    if len(labels) == 1:
        return f"[{src}]null[{labels[0]}]"
    return f"[{src}]split={len(labels)}" + "".join(f"[{x}]" for x in labels)


@dataclass(frozen=True)
class Encode:
    """One encode in a shared render: a market's picture (subtitles, marks) and its file.

    Encodes that share a profile's frame (size, reframe, rate) share the reframe, and those
    that also share the subtitle document share the libass pass: variants A and B of a
    forensic mark differ only in the last blend.
    """

    profile: RenderProfile
    #: subtitles and visible mark burned in (None: nothing burned, e.g. a benchmark's bare encode)
    ass_path: Path | None
    target: Path
    #: the market's mix, muxed in as AAC (None: a video-only encode)
    audio_wav: Path | None = None
    #: forensic pattern clip blended last, and whether it loops (the single-layer clip is
    #: one period at 10 fps; A/B clips cover the whole episode at the video's rate)
    pattern: Path | None = None
    pattern_loop: bool = True
    #: time of the pattern clip's first frame (a window re-render's clip starts at its window)
    pattern_start: float = 0.0
    #: write closed-GOP MPEG-TS segments (target is a ``%05d`` pattern) for A/B assembly
    segmented: bool = False
    #: how the source subtitles are removed ("fill", "blur", "none") and whether static
    #: texts (logo, title) go too: the market's ``source_subtitles`` policy
    mask: str = "fill"
    mask_static: bool = False
    #: the box over the source band with ``mask="box"``
    cover: Cover = Cover()


def frame_groups(source: MediaInfo, encodes: list[Encode], matrix: str) -> list[list[int]]:
    """Encodes grouped by the picture they start from: the same rate and the same reframe
    (by the filters themselves, so a 9:16 source's crop and blur-pad profiles, which both
    just scale it, are one group)."""
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(encodes):
        fps = output_fps(e.profile, source.fps)
        key = (fps, reframe_graph(e.profile, source.display_width, source.display_height, "in", "out",
                                  matrix=matrix), e.mask, e.mask_static, e.cover)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def shared_graph(source: MediaInfo, encodes: list[Encode], *, matrix: str = "bt709",
                 source_subs: SourceSubtitles | None = None, window: tuple[float, float] | None = None,
                 first_extra_input: int = 1, fills: dict[bool, Fill] | None = None,
                 ) -> tuple[list[str], list[list[str]], list[tuple[str, str | None]]]:
    """The filtergraphs of a shared render: (graphs, extra input args, (video, audio) labels).

    One graph per frame group (see frame_groups), all fed by the one decode of the source:
    mask -> rate -> reframe -> one libass pass per distinct subtitle document -> per encode
    4:2:0 and the forensic blend (variants A and B share everything up to the blend).
    ffmpeg runs each graph in its own thread, so groups filter in parallel. Extra inputs
    (each encode's mix, then its pattern) are numbered from ``first_extra_input`` in
    order. With a single encode the labels are [v] and [a], and the pattern is input 2
    (FORENSIC_INPUT).
    """
    one = len(encodes) == 1
    graphs: list[str] = []
    inputs: list[list[str]] = []
    labels: dict[int, tuple[str, str | None]] = {}
    n = first_extra_input
    for g, members in enumerate(frame_groups(source, encodes, matrix)):
        first = encodes[members[0]]
        parts = [head_graph(source, source_subs, f"g{g}h", window, fill=(fills or {}).get(first.mask_static),
                            mask=first.mask, cover=first.cover)]
        src = f"g{g}h"
        fps = output_fps(encodes[members[0]].profile, source.fps)
        if fps:
            parts.append(f"[{src}]fps={fps:g}[g{g}f]")
            src = f"g{g}f"
        parts.append(reframe_graph(encodes[members[0]].profile, source.display_width, source.display_height,
                                   src, f"g{g}r", matrix=matrix))
        docs: dict[Path | None, list[int]] = {}
        for i in members:
            docs.setdefault(encodes[i].ass_path, []).append(i)
        doc_labels = [f"g{g}r{d}" for d in range(len(docs))]
        parts.append(_fan_out(f"g{g}r", doc_labels))
        pre: dict[int, str] = {}
        for d, (ass_path, users) in enumerate(docs.items()):
            burn = f"ass=filename={escape_filter_value(str(ass_path))}," if ass_path else ""
            parts.append(f"[{doc_labels[d]}]setparams={BT709_TAGS},{burn}format=yuv420p[g{g}s{d}]")
            parts.append(_fan_out(f"g{g}s{d}", [f"vp{i}" for i in users]))
            pre.update({i: f"vp{i}" for i in users})
        for i in members:
            e = encodes[i]
            v, a = ("v", "a") if one else (f"v{i}", f"a{i}")
            if e.audio_wav is not None:
                inputs.append(["-i", str(e.audio_wav)])
                parts.append(audio_graph(e.profile.audio_sample_rate, input_index=n, out=a))
                n += 1
            else:
                a = None
            if e.pattern is not None:
                inputs.append([*(["-stream_loop", "-1"] if e.pattern_loop else []), "-i", str(e.pattern)])
                p = e.profile
                shift = f"setpts=PTS+{e.pattern_start:.6f}/TB," if e.pattern_start else ""
                parts.append(f"[{n}:v]{shift}scale={p.width}:{p.height}:flags=bilinear[wm{i}];"
                             f"[{pre[i]}][wm{i}]blend=c0_mode=grainmerge:shortest=1[{v}]")
                n += 1
            else:
                parts.append(f"[{pre[i]}]null[{v}]")
            labels[i] = (v, a)
        graphs.append(";".join(parts))
    return graphs, inputs, [labels[i] for i in range(len(encodes))]


def encoder_args(profile: RenderProfile, fps: float) -> list[str]:
    """x264 High, closed GOP of half a second, CRF under a bitrate cap, BT.709 tags."""
    gop = str(gop_frames(fps))
    return ["-c:v", profile.video_codec, "-profile:v", "high", "-pix_fmt", "yuv420p",
            "-preset", profile.preset, "-crf", str(profile.crf),
            "-maxrate", profile.maxrate, "-bufsize", profile.bufsize,
            "-g", gop, "-keyint_min", gop, "-sc_threshold", "0", "-flags", "+cgop",
            "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


def output_args(source: MediaInfo, e: Encode, video: str, audio: str | None, *,
                window: tuple[float, float] | None = None) -> list[str]:
    """Map, encoder and muxer options of one encode (placed before its output path)."""
    fps = output_fps(e.profile, source.fps) or source.fps
    args = ["-map", f"[{video}]"]
    if audio:
        args += ["-map", f"[{audio}]"]
    if window is None:
        args += ["-t", f"{source.duration:.3f}"]
    args += encoder_args(e.profile, fps)
    if audio:
        args += ["-c:a", "aac", "-b:a", e.profile.audio_bitrate, "-ar", str(e.profile.audio_sample_rate),
                 "-ac", "2"]
    args += ["-map_metadata", "-1", "-map_chapters", "-1"]
    if e.segmented:
        # a new file at every keyframe: one closed GOP per segment, timestamps continuous
        # across files, so any mix of A and B segments concatenates into one valid stream
        # (offset by a second: the encoder's first DTS is negative by the B-frame delay,
        # and the muxer would shift only the segments where it is, not a window's)
        return args + ["-output_ts_offset", "1", "-f", "segment", "-segment_format", "mpegts",
                       "-segment_time", "0.001", "-reset_timestamps", "0", str(e.target)]
    return args + ["-movflags", "+faststart", "-f", "mp4", str(e.target)]


def shared_render_args(source: MediaInfo, encodes: list[Encode], *, matrix: str = "bt709",
                       source_subs: SourceSubtitles | None = None,
                       window: tuple[float, float] | None = None, fills: dict[bool, Fill] | None = None) -> list[str]:
    """One ffmpeg run: decode the source once and write every encode.

    Timestamps are the source's own, from zero (``-copyts -start_at_zero``), so a window
    re-render (``window``, decoding from a second before it) produces frames with exactly
    the timestamps of the full render it patches.
    """
    graphs, extra, labels = shared_graph(source, encodes, matrix=matrix, source_subs=source_subs, window=window,
                                         fills=fills)
    seek = ["-ss", f"{max(0.0, window[0] - 1.0):.3f}"] if window else []
    args = ["-copyts", "-start_at_zero", "-autorotate", *seek, "-i", source.path]
    for inp in extra:
        args += inp
    for graph in graphs:
        args += ["-filter_complex", graph]
    for e, (v, a) in zip(encodes, labels):
        args += output_args(source, e, v, a, window=window)
    return args


def audio_graph(sample_rate: int, *, input_index: int = 1, out: str = "a") -> str:
    """Mix WAV -> [out]: resampled, stereo, and padded with silence without end (``-t`` cuts
    it at the source's duration, so the audio never shortens the video)."""
    return (f"[{input_index}:a:0]aresample={sample_rate},aformat=sample_fmts=fltp:channel_layouts=stereo,"
            f"apad[{out}]")


def ffmpeg_args(source: MediaInfo, audio_wav: Path, ass_path: Path, profile: RenderProfile,
                out_path: Path, *, matrix: str = "bt709", source_subs: SourceSubtitles | None = None,
                forensic: ForensicGraph | None = None) -> list[str]:
    """The ffmpeg argument list of one export (binary and global flags are added by run_ffmpeg).

    ``forensic`` (from forensic_graph) adds its pattern clip as input FORENSIC_INPUT, blended last.
    """
    encode = Encode(profile, ass_path, out_path, audio_wav=audio_wav,
                    pattern=forensic.pattern if forensic else None)
    return shared_render_args(source, [encode], matrix=matrix, source_subs=source_subs)
