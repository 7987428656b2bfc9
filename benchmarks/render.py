"""Render stage cost: one decode for every export vs a bare encode, vs separate passes, per distributor.

    .venv/bin/python benchmarks/render.py [--run benchmarks/out/render/run] [--out benchmarks/out/render]
                                          [--markets us,us-social] [--ab-market us] [--distributors 3]
                                          [--limit SECONDS]

Inputs are the real artifacts of one pipeline run on the sample (37 s, 720x1280 ->
1080x1920): ingest (MediaInfo), source_subs (the Chinese subtitle band and its intervals),
each market's segment track and mix WAV, read from the run's work folder. When ``--run``
has no work folder the script makes one first with
``locpipe run samples/ --out RUN --markets us,us-social`` (later runs reuse it).

Measured in one run (wall and child CPU seconds; the machine's load drifts, CPU is the
steadier figure):

1. **the render stage** for every market at once (``render.render_exports``: one ffmpeg
   run, one decode and one mask shared, per market its reframe, ASS subtitles + visible
   watermark, forensic mark where the profile has it, audio, x264) against a **bare
   encode of the same outputs** (one run: the same reframes, encoders and audio, no mask,
   no subtitles, no marks). Target <= 1.15.
2. the same work as **separate passes** per market, each re-encoding at the profile's
   settings (what a naive script or moviepy does): mask + reframe, subtitles + watermark,
   the forensic mark (profiles that have it), the audio mux (re-encoding the video too,
   as moviepy's write does; the stream-copy mux is printed as well). Target >= 2x the
   one-pass time. Also printed: each market rendered alone (what one decode saves).
3. **many distributors** (``--ab-market``): a full render for one distributor, the A/B
   base (variants A and B once, ``render_ab.prepare_base``) and then each distributor's
   copy (``render_ab.assemble``: its visible-text window rendered, the rest stream-copied).
   The marginal cost of one more distributor is its assembly time over the full render.
   Target <= 5%. One copy is traced back (``locpipe trace``) to show it names its distributor.
4. a PNG frame grab per market of the one-pass export where a target subtitle, the source
   mask and the visible watermark are all on screen, and one of an A/B copy inside its
   distributor window (the distributor's name on screen).

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
from locpipe.media.ass import build_ass
from locpipe.media.ffmpeg import escape_filter_value, run_ffmpeg
from locpipe.media.subtitles import write_ass
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.render.visible import plan_visible_watermark
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


def jobs_for(inputs: dict[str, Inputs], markets: dict[str, Market], work: Path, ledger: Path,
             distributor: str) -> list[render.ExportJob]:
    """One export job per market, as the pipeline makes them (forensic where the profile has it)."""
    return [render.ExportJob(m, inputs[c].wav, inputs[c].track, inputs[c].track_dir, EPISODE, distributor,
                             f"bench-{c}-{distributor}", work / c, _spec(m, ledger, work / c / "export.mp4"))
            for c, m in markets.items()]


def _spec(market: Market, ledger: Path, file: Path) -> ForensicSpec | None:
    """The pipeline's spec: the key file beside the ledger (so ``locpipe trace`` finds it)."""
    from locpipe.watermark.keys import load_key

    if not market.profile.forensic_watermark:
        return None
    return ForensicSpec(key=load_key(ledger, create=True), ledger=ledger, export_file=str(file))


def one_pass(source: MediaInfo, subs: SourceSubtitles | None, jobs: list[render.ExportJob]):
    """The render stage as the pipeline runs it: every job from one decode."""
    with Clock() as c:
        results = render.render_exports(source, jobs, source_subs=subs)
    return results, c.t


def bare_encode(source: MediaInfo, inputs: dict[str, Inputs], markets: dict[str, Market], work: Path) -> Timed:
    """The same outputs with nothing but reframe + encode + audio: one decode, the same
    scalers, matrix, encoders and AAC (graph.shared_render_args itself), no mask, no
    subtitles, no marks."""
    encodes = [graph.Encode(m.profile, None, work / f"bare-{c}.mp4", audio_wav=inputs[c].wav)
               for c, m in markets.items()]
    matrix = graph.input_matrix(source.color_matrix, source.width, source.height)
    args = graph.shared_render_args(source, encodes, matrix=matrix)
    with Clock() as c:
        run_ffmpeg(args, what="bare encode")
    return c.t


def separate_passes(inp: Inputs, market: Market, work: Path, payload: Payload | None) -> dict[str, Timed]:
    """The render's steps as separate ffmpeg runs, each decoding the previous file and
    re-encoding it with the render's encoder settings."""
    profile = market.profile
    src = inp.source
    work.mkdir(parents=True, exist_ok=True)
    matrix = graph.input_matrix(src.color_matrix, src.width, src.height)
    tail = encoder_tail(graph.ffmpeg_args(src, inp.wav, work / "unused.ass", profile, work / "x.mp4",
                                           matrix=matrix))
    times: dict[str, Timed] = {}

    # 1. mask + reframe (the reframe has to happen in some pass; it goes with the first)
    fps = graph.output_fps(profile, src.fps)
    mask = graph.mask_graph(inp.source_subs, src, "0:v:0", "vm") if inp.source_subs else None
    first = "vm" if mask else "0:v:0"
    head = (f"{mask};" if mask else "") + (f"[{first}]fps={fps:g}[vf];" if fps else "")
    fgraph = (head + graph.reframe_graph(profile, src.display_width, src.display_height, "vf" if fps else first,
                                          "vr", matrix=matrix)
              + f";[vr]setparams={graph.BT709_TAGS},format=yuv420p[v]")
    p1 = work / "p1-mask-reframe.mp4"
    with Clock() as c:
        run_ffmpeg(["-autorotate", "-i", src.path, "-filter_complex", fgraph, "-map", "[v]", *tail, str(p1)],
                   what="mask pass")
    times["mask + reframe"] = c.t

    # 2. subtitles + visible watermark (libass)
    mark = plan_visible_watermark(market, duration=src.duration, distributor=DISTRIBUTORS[0], episode=EPISODE,
                                  export_id="bench-sep")
    ass_path = write_ass(build_ass(inp.track, market.config.subtitles, profile, mark.layer() if mark else None),
                         work / "sep.ass")
    p2 = work / "p2-subs.mp4"
    burn = f"[0:v]setparams={graph.BT709_TAGS},ass=filename={escape_filter_value(str(ass_path))},format=yuv420p[v]"
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
                        f"[0:v]setparams={graph.BT709_TAGS},format=yuv420p[vpre];{g.fragment}",
                        "-map", "[v]", *tail, str(p3)], what="forensic pass")
        times["forensic mark"] = c.t
        last = p3

    # 4. audio mux, re-encoding the video (moviepy's write_videofile), and by stream copy
    audio = graph.audio_graph(profile.audio_sample_rate)
    with Clock() as c:
        run_ffmpeg(["-i", str(last), "-i", str(inp.wav), "-filter_complex",
                    f"[0:v]setparams={graph.BT709_TAGS},format=yuv420p[v];{audio}", "-map", "[v]", "-map", "[a]",
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
    windows = graph.mask_windows(inp.source_subs, duration=inp.source.duration) if inp.source_subs else []
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


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    return ["| measurement | time | ratio | target |", "|---|---|---|---|",
            *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows)]


def bench_shared(codes: list[str], episode_dir: Path, out: Path, limit: float | None) -> list[str]:
    """Measurements 1, 2 and the per-market frame grabs."""
    markets = {c: load_market(DEFAULT_CONFIG_DIR, c) for c in codes}
    inputs = {c: _limited(market_inputs(episode_dir, m), limit) for c, m in markets.items()}
    first = inputs[codes[0]]
    source, subs = first.source, first.source_subs
    lines = [f"### one decode for {', '.join(codes)}: {source.duration:.1f} s of {Path(source.path).name} "
             f"({source.width}x{source.height}), mask {'on' if subs and subs.found else 'off'}"]
    for c, m in markets.items():
        p = m.profile
        lines.append(f"- {c}: {p.reframe} {p.width}x{p.height}, x264 {p.preset} CRF {p.crf} maxrate {p.maxrate}, "
                     f"forensic mark {'on' if p.forensic_watermark else 'off'}, "
                     f"{len(inputs[c].track.events)} subtitle events")
    with tempfile.TemporaryDirectory(dir=out, prefix=".shared-") as tmp:
        work = Path(tmp)
        ledger = work / "forensic-ledger.sqlite"
        results, t_one = one_pass(source, subs, jobs_for(inputs, markets, work / "one", ledger, DISTRIBUTORS[0]))
        log.warning("one pass, all markets: %s", fmt(t_one))
        t_bare = bare_encode(source, inputs, markets, work)
        log.warning("bare encode, all markets: %s", fmt(t_bare))
        alone: dict[str, Timed] = {}
        for c, m in markets.items():
            _, alone[c] = one_pass(source, subs, jobs_for({c: inputs[c]}, {c: m}, work / "alone", ledger,
                                                          DISTRIBUTORS[0]))
            log.warning("%s alone: %s", c, fmt(alone[c]))
        passes: dict[str, dict[str, Timed]] = {}
        for (c, m), res in zip(markets.items(), results):
            payload = Payload.from_hex(res.forensic_payload) if res.forensic_payload else None
            passes[c] = separate_passes(inputs[c], m, work / f"sep-{c}", payload)
            log.warning("%s separate passes done", c)
        grabs = []
        for c in codes:
            export = (work / "one" / c / graph.VIDEO_NAME).replace(out / c / f"{EPISODE}-onepass.mp4")
            t = grab_time(inputs[c])
            grabs.append(f"- {c}: frame at {t:.2f} s (subtitle + mask + visible mark): "
                         f"{frame_grab(export, t, out / f'frame-{c}.png')}; export kept: {export}")
    sep_reenc = _sum(*(v for per in passes.values() for k, v in per.items() if k != "mux (stream copy)"))
    sep_copy = _sum(*(v for per in passes.values() for k, v in per.items() if k != "mux (re-encode)"))
    each = _sum(*alone.values())
    r1 = t_one.wall / t_bare.wall
    rows = [
        (f"render stage, one ffmpeg run for {len(codes)} market(s)", fmt(t_one), "", ""),
        ("bare x264 encode of the same outputs (one run)", fmt(t_bare), "", ""),
        ("**1. render / bare encode**", "", ratio(t_one, t_bare), f"<= 1.15 ({'met' if r1 <= 1.15 else 'not met'})"),
        *((f"market {c} rendered alone", fmt(t), "", "") for c, t in alone.items()),
        ("markets rendered one by one / one run", fmt(each), ratio(each, t_one), ""),
        *((f"separate pass: {c} {k}", fmt(v), "", "") for c, per in passes.items() for k, v in per.items()),
        ("separate passes, all re-encoding", fmt(sep_reenc), "", ""),
        ("**2. separate passes (all re-encode) / one run**", "", ratio(sep_reenc, t_one),
         f">= 2 ({'met' if sep_reenc.wall >= 2 * t_one.wall else 'not met'})"),
        ("2b. separate passes (mux by stream copy) / one run", fmt(sep_copy), ratio(sep_copy, t_one), ""),
    ]
    return lines + [""] + _table(rows) + ["", "Frame grabs:"] + grabs


def bench_distributors(code: str, n: int, episode_dir: Path, out: Path, limit: float | None) -> list[str]:
    """Measurement 3: a full render vs the A/B base and each distributor's assembly."""
    from locpipe.render import ab as render_ab
    from locpipe.watermark.trace import trace_report

    market = load_market(DEFAULT_CONFIG_DIR, code)
    inp = _limited(market_inputs(episode_dir, market), limit)
    names = [f"bench-distributor-{i + 1}" for i in range(n)]
    with tempfile.TemporaryDirectory(dir=out, prefix=f".ab-{code}-") as tmp:
        work = Path(tmp)
        ledger = work / "forensic-ledger.sqlite"
        _, t_full = one_pass(inp.source, inp.source_subs,
                             jobs_for({code: inp}, {code: market}, work / "full", ledger, names[0]))
        log.warning("%s full render: %s", code, fmt(t_full))
        base_job = render_ab.BaseJob(market, inp.wav, inp.track, EPISODE, work / "base",
                                     _spec(market, ledger, work / "base.mp4"))
        with Clock() as c:
            base = render.run_shared(inp.source, [render_ab.prepare_base(inp.source, base_job)],
                                     source_subs=inp.source_subs)[0]
        t_base = c.t
        log.warning("%s A/B base: %s", code, fmt(t_base))
        copies: list[tuple[str, Timed, object]] = []
        for i, name in enumerate(names):
            job = render_ab.DistributorJob(market, base, work / "base", inp.track, inp.track_dir, EPISODE, name,
                                           f"bench-ab-{i}", work / name, _spec(market, ledger, work / name / "x.mp4"))
            with Clock() as c:
                result = render_ab.assemble(inp.source, job, source_subs=inp.source_subs)
            copies.append((name, c.t, result))
            log.warning("%s copy for %s: %s", code, name, fmt(c.t))
        name, _, result = copies[-1]
        kept = (work / name / graph.VIDEO_NAME).replace(out / code / f"{EPISODE}-{name}.mp4")
        traced = ""
        if market.profile.forensic_watermark:
            report, _found = trace_report(kept, ledger)
            who = (report.get("ledger") or {}).get("distributor", "?")
            traced = (f"- `locpipe trace` of {kept.name}: distributor determined "
                      f"{report.get('distributor_determined')} -> {who} (A/B score "
                      f"{(report.get('ab') or {}).get('score')}, "
                      f"threshold {(report.get('ab') or {}).get('threshold')})")
        a, b = result.distributor_windows[0] if result.distributor_windows else (0.0, 0.0)
        grab = frame_grab(kept, (a + b) / 2, out / f"frame-{code}-distributor-window.png")
    marginal = Timed(sum(t.wall for _, t, _ in copies) / n, sum(t.cpu for _, t, _ in copies) / n)
    r3 = marginal.wall / t_full.wall
    rows = [
        (f"full render of {code} for one distributor", fmt(t_full), "", ""),
        (f"A/B base of {code} (variants A and B once; {base.n_segments} GOP segments each)", fmt(t_base),
         ratio(t_base, t_full), "(once per market)"),
        *((f"copy for {nm} (windows {r.distributor_windows}, assembly)", fmt(t), "", "") for nm, t, r in copies),
        ("**3. one more distributor / full render** (mean of the copies)", fmt(marginal), ratio(marginal, t_full),
         f"<= 0.05 ({'met' if r3 <= 0.05 else 'not met'})"),
    ]
    n_total = Timed(t_base.wall + n * marginal.wall, t_base.cpu + n * marginal.cpu)
    rows.append((f"{n} distributors by A/B vs {n} full renders", fmt(n_total),
                 ratio(n_total, Timed(n * t_full.wall, n * t_full.cpu)), ""))
    return ([f"### {n} distributors of {code} ({inp.source.duration:.1f} s)", ""] + _table(rows)
            + ["", traced, f"- frame in {name}'s window ({a:.2f}-{b:.2f} s): {grab}; copy kept: {kept}"])


def _limited(inp: Inputs, limit: float | None) -> Inputs:
    if not limit:
        return inp
    return Inputs(inp.source.model_copy(update={"duration": min(limit, inp.source.duration)}), inp.source_subs,
                  inp.track, inp.track_dir, inp.wav)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=ROOT / "benchmarks" / "out" / "render" / "run",
                        help="pipeline output folder whose work folder holds the inputs")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "render")
    parser.add_argument("--markets", default="us,us-social")
    parser.add_argument("--ab-market", default="us", help="market rendered for many distributors (3.)")
    parser.add_argument("--distributors", type=int, default=3)
    parser.add_argument("--limit", type=float, default=None, help="render only the first SECONDS (smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    codes = [c.strip() for c in args.markets.split(",") if c.strip()]
    episode_dir = ensure_run(args.run.resolve(), sorted({*codes, args.ab_market}))
    out = args.out.resolve()
    for c in {*codes, args.ab_market}:
        (out / c).mkdir(parents=True, exist_ok=True)
    report = [f"## render benchmark: {EPISODE} from {episode_dir}", ""]
    report += bench_shared(codes, episode_dir, out, args.limit)
    report += [""] + bench_distributors(args.ab_market, args.distributors, episode_dir, out, args.limit)
    print("\n".join(report))


if __name__ == "__main__":
    main()
