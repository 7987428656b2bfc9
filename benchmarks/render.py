"""Render stage cost: one ffmpeg pass vs a bare encode, vs separate passes, per distributor.

    .venv/bin/python benchmarks/render.py [--run benchmarks/out/render/run] [--out benchmarks/out/render]
                                          [--markets us,us-social] [--limit SECONDS]

Inputs are the real artifacts of one pipeline run on the sample (37 s, 720x1280 ->
1080x1920): ingest (MediaInfo), source_subs (the Chinese subtitle band and its intervals),
each market's segment track and mix WAV, read from the run's work folder. When ``--run``
has no work folder the script makes one first with
``locpipe run samples/ --out RUN --markets us,us-social`` (later runs reuse it).

Per market, in one run (the machine's load drifts, so the variants of a market run back
to back; wall and child CPU seconds are both printed, CPU being less sensitive to other
processes on the machine):

1. the render stage (``stages.render.render_export``: mask, reframe, ASS subtitles + visible
   watermark, forensic mark where the profile has it, audio, x264) against a *bare* encode
   of the same output: the same reframe filter and matrix, the same encoder and audio
   arguments (taken from ``render.ffmpeg_args`` itself), no mask, no subtitles, no marks;
2. the same work as separate ffmpeg passes, each re-encoding at the profile's settings
   (what a naive script or moviepy does): mask + reframe, then subtitles + watermark, then
   the forensic mark (profiles that have it), then the audio mux (re-encoding the video
   too, as moviepy's write does; the figure with a stream-copy mux is printed as well);
3. a second ``render_export`` of the same market for another distributor: today every
   distributor is a full render (the A/B segment model of issue 6 item 7 is not
   implemented), so its marginal cost is ~100% of a render;
4. a PNG frame grab of the one-pass export at a moment where a target subtitle, the
   source-subtitle mask and the visible watermark are all on screen.

``--limit`` renders only the first SECONDS of the episode (a smoke run of the script).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import IngestResult, MediaInfo, MixResult, SourceSubtitles, SubtitleTrack
from locpipe.assets import font_env
from locpipe.config import DEFAULT_CONFIG_DIR, Market, load_market
from locpipe.media.ass import build_ass, write_ass
from locpipe.media.ffmpeg import escape_filter_value, run_ffmpeg
from locpipe.stages import render
from locpipe.stages.watermark_visible import plan_visible_watermark
from locpipe.watermark.forensic import ForensicSpec, forensic_graph
from locpipe.watermark.payload import Payload

log = logging.getLogger("benchmarks.render")

ROOT = Path(__file__).resolve().parent.parent
KEY = b"benchmark-studio-key-render"
EPISODE = "ep001"
DISTRIBUTORS = ("bench-distributor-A", "bench-distributor-B")


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Inputs:
    """One market's real render inputs from the pipeline's work folder."""

    source: MediaInfo
    source_subs: SourceSubtitles | None
    track: SubtitleTrack
    track_dir: Path
    wav: Path


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def ensure_run(run: Path, markets: list[str]) -> Path:
    """The episode's work folder inside ``run``, running the pipeline once if it is missing."""
    found = sorted((run / ".locpipe-work" / "episodes").glob(f"{EPISODE}-*"))
    if not found:
        exe = Path(sys.executable).with_name("locpipe")
        cmd = [str(exe), "run", str(ROOT / "samples"), "--out", str(run), "--markets", ",".join(markets)]
        log.warning("no pipeline run in %s; running %s", run, " ".join(cmd))
        subprocess.run(cmd, check=True, cwd=ROOT)
        found = sorted((run / ".locpipe-work" / "episodes").glob(f"{EPISODE}-*"))
    if not found:
        sys.exit(f"{run}: no {EPISODE} work folder after the pipeline run")
    return found[0]


def market_inputs(episode_dir: Path, market: Market) -> Inputs:
    """Find the market's render in the work folder (by its profile, style and watermark
    policy in the render key) and follow its keys to the segment, mix and OCR artifacts."""
    want = {"profile": market.profile.model_dump(mode="json"),
            "style": market.config.subtitles.model_dump(mode="json")}
    for key_file in sorted((episode_dir / "render").glob("*/key.json")):
        key = _load(key_file)
        if all(key.get(k) == v for k, v in want.items()):
            break
    else:
        sys.exit(f"{episode_dir / 'render'}: no render of market {market.code}; run the pipeline with it")
    ingest = IngestResult.model_validate(_load(next((episode_dir / "ingest").glob("*/artifact.json"))))
    source = ingest.info
    if not Path(source.path).is_absolute():
        source = source.model_copy(update={"path": str(ROOT / source.path)})
    subs = None
    if key.get("source_subs"):
        subs = SourceSubtitles.model_validate(_load(episode_dir / "source_subs" / key["source_subs"] / "artifact.json"))
    track_dir = episode_dir / "segment" / key["segment"]
    track = SubtitleTrack.model_validate(_load(track_dir / "artifact.json"))
    mix_dir = episode_dir / "mix" / key["mix"]
    mix = MixResult.model_validate(_load(mix_dir / "artifact.json"))
    return Inputs(source, subs, track, track_dir, mix_dir / mix.wav)


# --------------------------------------------------------------------------- timing


@dataclass(frozen=True)
class Timed:
    wall: float
    cpu: float  # user + system seconds of child processes (ffmpeg)


class Clock:
    """Wall and child-CPU seconds of a block (ffmpeg runs as a child: its CPU shows in
    RUSAGE_CHILDREN once it has been waited for)."""

    def __enter__(self) -> Clock:
        self._w = time.perf_counter()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self._c = ru.ru_utime + ru.ru_stime
        return self

    def __exit__(self, *exc) -> None:
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.t = Timed(time.perf_counter() - self._w, ru.ru_utime + ru.ru_stime - self._c)


def _sum(*ts: Timed) -> Timed:
    return Timed(sum(t.wall for t in ts), sum(t.cpu for t in ts))


# --------------------------------------------------------------------------- variants


def encoder_tail(args: list[str]) -> list[str]:
    """The render's own output options (``-t`` ... ``-f mp4``, without the output path):
    every variant encodes exactly like the render stage."""
    return args[args.index("-t"):-1]


def one_pass(inp: Inputs, market: Market, work: Path, distributor: str, export_id: str,
             forensic: ForensicSpec | None):
    """The render stage as the pipeline calls it."""
    with Clock() as c:
        result = render.render_export(inp.source, inp.wav, inp.track, inp.track_dir, market, episode=EPISODE,
                                      distributor=distributor, export_id=export_id, out_dir=work,
                                      source_subs=inp.source_subs, forensic=forensic)
    return result, c.t


def bare_encode(inp: Inputs, market: Market, work: Path) -> Timed:
    """Reframe + encode only: the render's argument list with the video graph cut down to
    the reframe (same scaler, matrix and tags) and the audio graph unchanged."""
    profile = market.profile
    matrix = render.input_matrix(render.tagged_matrix(Path(inp.source.path)), inp.source.width, inp.source.height)
    args = render.ffmpeg_args(inp.source, inp.wav, work / "unused.ass", profile, work / "bare.mp4", matrix=matrix)
    fps = render.output_fps(profile, inp.source.fps)
    head = f"[0:v:0]fps={fps:g}[vf];" if fps else ""
    video = (head + render.reframe_graph(profile, inp.source.display_width, inp.source.display_height,
                                         "vf" if fps else "0:v:0", "vr", matrix=matrix)
             + f";[vr]setparams={render.BT709_TAGS},format=yuv420p[v]")
    args[args.index("-filter_complex") + 1] = f"{video};{render.audio_graph(profile.audio_sample_rate)}"
    with Clock() as c:
        run_ffmpeg(args, what="bare encode")
    return c.t


def separate_passes(inp: Inputs, market: Market, work: Path, payload: Payload | None) -> dict[str, Timed]:
    """The render's steps as separate ffmpeg runs, each decoding the previous file and
    re-encoding it with the render's encoder settings."""
    profile = market.profile
    src = inp.source
    matrix = render.input_matrix(render.tagged_matrix(Path(src.path)), src.width, src.height)
    tail = encoder_tail(render.ffmpeg_args(src, inp.wav, work / "unused.ass", profile, work / "x.mp4",
                                           matrix=matrix))
    times: dict[str, Timed] = {}

    # 1. mask + reframe (the reframe has to happen in some pass; it goes with the first)
    fps = render.output_fps(profile, src.fps)
    mask = render.mask_graph(inp.source_subs, src, "0:v:0", "vm") if inp.source_subs else None
    first = "vm" if mask else "0:v:0"
    head = (f"{mask};" if mask else "") + (f"[{first}]fps={fps:g}[vf];" if fps else "")
    graph = (head + render.reframe_graph(profile, src.display_width, src.display_height, "vf" if fps else first,
                                         "vr", matrix=matrix)
             + f";[vr]setparams={render.BT709_TAGS},format=yuv420p[v]")
    p1 = work / "p1-mask-reframe.mp4"
    with Clock() as c:
        run_ffmpeg(["-autorotate", "-i", src.path, "-filter_complex", graph, "-map", "[v]", *tail, str(p1)],
                   what="mask pass")
    times["mask + reframe"] = c.t

    # 2. subtitles + visible watermark (libass)
    mark = plan_visible_watermark(market, duration=src.duration, distributor=DISTRIBUTORS[0], episode=EPISODE,
                                  export_id="bench-sep")
    ass_path = write_ass(build_ass(inp.track, market.config.subtitles, profile, mark.layer() if mark else None),
                         work / "sep.ass")
    p2 = work / "p2-subs.mp4"
    burn = f"[0:v]setparams={render.BT709_TAGS},ass=filename={escape_filter_value(str(ass_path))},format=yuv420p[v]"
    with Clock() as c:
        run_ffmpeg(["-i", str(p1), "-filter_complex", burn, "-map", "[v]", *tail, str(p2)], env=font_env(),
                   what="subtitle pass")
    times["subtitles + watermark"] = c.t
    last = p2

    # 3. forensic mark
    if payload is not None:
        g = forensic_graph(payload, width=profile.width, height=profile.height, key=KEY, work_dir=work,
                           input_index=1, in_label="vpre", out_label="v")
        p3 = work / "p3-forensic.mp4"
        with Clock() as c:
            run_ffmpeg(["-i", str(p2), *g.input_args, "-filter_complex",
                        f"[0:v]setparams={render.BT709_TAGS},format=yuv420p[vpre];{g.fragment}",
                        "-map", "[v]", *tail, str(p3)], what="forensic pass")
        times["forensic mark"] = c.t
        last = p3

    # 4. audio mux, re-encoding the video (moviepy's write_videofile), and by stream copy
    audio = render.audio_graph(profile.audio_sample_rate)
    with Clock() as c:
        run_ffmpeg(["-i", str(last), "-i", str(inp.wav), "-filter_complex",
                    f"[0:v]setparams={render.BT709_TAGS},format=yuv420p[v];{audio}", "-map", "[v]", "-map", "[a]",
                    *tail, str(work / "p4-mux.mp4")], what="mux pass")
    times["mux (re-encode)"] = c.t
    copy_tail = list(tail)
    at = copy_tail.index("-c:v")
    copy_tail[at + 1] = "copy"
    for opt in ("-profile:v", "-pix_fmt", "-preset", "-crf", "-maxrate", "-bufsize", "-g", "-keyint_min",
                "-sc_threshold", "-flags"):
        if opt in copy_tail:
            i = copy_tail.index(opt)
            del copy_tail[i:i + 2]
    with Clock() as c:
        run_ffmpeg(["-i", str(last), "-i", str(inp.wav), "-filter_complex", audio, "-map", "0:v", "-map", "[a]",
                    *copy_tail, str(work / "p4-copy.mp4")], what="stream-copy mux")
    times["mux (stream copy)"] = c.t
    return times


# --------------------------------------------------------------------------- frame grab


def grab_time(inp: Inputs) -> float:
    """Middle of the longest stretch where a target subtitle and the source mask overlap
    (the visible watermark is on screen for the whole episode)."""
    windows = render.mask_windows(inp.source_subs, duration=inp.source.duration) if inp.source_subs else []
    best, t = 0.0, None
    for ev in inp.track.events:
        for a, b in windows or [(0.0, inp.source.duration)]:
            lo, hi = max(ev.start, a), min(ev.end, b)
            if hi - lo > best:
                best, t = hi - lo, (lo + hi) / 2
    return t if t is not None else inp.source.duration / 2


def frame_grab(video: Path, t: float, png: Path) -> Path:
    run_ffmpeg(["-ss", f"{t:.3f}", "-i", str(video), "-frames:v", "1", "-update", "1", str(png)], what="frame grab")
    return png


# --------------------------------------------------------------------------- report


def fmt(t: Timed) -> str:
    return f"{t.wall:7.1f} s wall {t.cpu:7.1f} s cpu"


def ratio(a: Timed, b: Timed) -> str:
    return f"{a.wall / b.wall:5.2f} wall, {a.cpu / b.cpu:5.2f} cpu"


def bench_market(code: str, episode_dir: Path, out: Path, limit: float | None) -> list[str]:
    market = load_market(DEFAULT_CONFIG_DIR, code)
    inp = market_inputs(episode_dir, market)
    if limit:
        inp = Inputs(inp.source.model_copy(update={"duration": min(limit, inp.source.duration)}), inp.source_subs,
                     inp.track, inp.track_dir, inp.wav)
    marked = market.profile.forensic_watermark
    lines = [f"### {code}: {market.profile.reframe}, {market.profile.width}x{market.profile.height}, "
             f"x264 {market.profile.preset} CRF {market.profile.crf} maxrate {market.profile.maxrate}, "
             f"forensic mark {'on' if marked else 'off'}, {inp.source.duration:.1f} s, "
             f"mask {'on' if inp.source_subs and inp.source_subs.found else 'off'}, "
             f"{len(inp.track.events)} subtitle events"]
    (out / code).mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{code}-") as tmp:
        work = Path(tmp)
        ledger = work / "forensic-ledger.sqlite"

        def spec(distributor: str) -> ForensicSpec | None:
            return ForensicSpec(key=KEY, ledger=ledger, export_file=str(out / code / f"{distributor}.mp4")) \
                if marked else None

        first, t_one = one_pass(inp, market, work / "A", DISTRIBUTORS[0], "benchA0001", spec(DISTRIBUTORS[0]))
        log.warning("%s: one pass %s", code, fmt(t_one))
        t_bare = bare_encode(inp, market, work)
        log.warning("%s: bare %s", code, fmt(t_bare))
        payload = Payload.from_hex(first.forensic_payload) if first.forensic_payload else None
        passes = separate_passes(inp, market, work, payload)
        log.warning("%s: separate passes done", code)
        _second, t_two = one_pass(inp, market, work / "B", DISTRIBUTORS[1], "benchB0002", spec(DISTRIBUTORS[1]))
        log.warning("%s: second distributor %s", code, fmt(t_two))
        export = (work / "A" / render.VIDEO_NAME).replace(out / code / f"{EPISODE}-onepass.mp4")
        t = grab_time(inp)
        png = frame_grab(export, t, out / f"frame-{code}.png")

    sep_reenc = _sum(*(v for k, v in passes.items() if k != "mux (stream copy)"))
    sep_copy = _sum(*(v for k, v in passes.items() if k != "mux (re-encode)"))
    lines += [
        "",
        "| measurement | time | ratio | target |",
        "|---|---|---|---|",
        f"| render stage, one pass (render_export; ffmpeg alone {first.ffmpeg_seconds:.1f} s) | {fmt(t_one)} | | |",
        f"| bare x264 encode (same reframe + encoder + AAC) | {fmt(t_bare)} | | |",
        f"| **1. render / bare encode** | | {ratio(t_one, t_bare)} | <= 1.15 |",
    ]
    lines += [f"| separate pass: {k} | {fmt(v)} | | |" for k, v in passes.items()]
    lines += [
        f"| separate passes, all re-encoding | {fmt(sep_reenc)} | | |",
        f"| **2. separate (all re-encode) / one pass** | | {ratio(sep_reenc, t_one)} | >= 2 |",
        f"| 2b. separate (mux by stream copy) / one pass | {fmt(sep_copy)} | {ratio(sep_copy, t_one)} | |",
        f"| render for a 2nd distributor ({DISTRIBUTORS[1]}) | {fmt(t_two)} | | |",
        f"| **3. marginal distributor / full render** | | {ratio(t_two, t_one)} | <= 0.05 "
        f"({'met' if t_two.wall <= 0.05 * t_one.wall else 'not met: no A/B segments, every distributor is a full render'}) |",
        "",
        f"4. frame grab at {t:.2f} s (subtitle + mask + visible mark): {png}",
        f"   one-pass export kept: {export}",
    ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "benchmarks" / "out" / "render" / "run",
                        help="pipeline output folder whose work folder holds the inputs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "render")
    parser.add_argument("--markets", default="us,us-social")
    parser.add_argument("--limit", type=float, default=None, help="render only the first SECONDS (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    codes = [c.strip() for c in args.markets.split(",") if c.strip()]
    episode_dir = ensure_run(args.run.resolve(), codes)
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = [f"## render benchmark: {EPISODE} from {episode_dir}"]
    for code in codes:
        report += [""] + bench_market(code, episode_dir, out, args.limit)
    print("\n".join(report))


if __name__ == "__main__":
    main()
