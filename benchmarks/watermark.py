"""Forensic watermark: robustness to the leak attack suite, false positives, PSNR, cost.

    .venv/bin/python benchmarks/watermark.py [--out benchmarks/out/watermark] [--reps 1]

Renders the bundled sample (samples/ep001.mp4, 37 s) through locpipe's own render
(``stages.render.render_export``, market ``us``: app profile 1080x1920, visible watermark,
x264 veryfast CRF 20) twice, without and with the forensic mark; the embed cost is the
difference of the two ffmpeg runs (best of --reps). Then it attacks the marked export with
ffmpeg and traces every version. Prints one table: per attack the raw coded-bit accuracy
(before Viterbi), whether the exact payload decoded, the detection statistic R (found
needs R >= threshold and a valid CRC), its p-value bound, the largest R that wrong keys
reach on the same video, and the trace time; then the same on unmarked videos.

The A/B section (watermark/ab.py) does what the many-distributors render does: the sample
upscaled to 1080x1920 is encoded twice, variant A and variant B (common batch payload +
A/B layer with all symbols +1 / -1; x264 veryfast CRF 20, closed GOPs of AB_GOP frames),
both are cut into GOP segments by stream copy and one member's copy of an 8-distributor
batch is assembled from them by stream copy (concat demuxer). The same attack suite is run
on that copy; per attack: the common payload found, the distributor determined and right,
the A/B evidence (decades) against its threshold and the null sequences' best. Then PSNR
against the same encode without the mark and the false-claim checks (unmarked video,
variant A only, variant B only, the copy traced without its member in the candidate list).

    .venv/bin/python benchmarks/watermark.py --section ab   # only the A/B section
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from locpipe.artifacts import SubtitleTrack
from locpipe.config import DEFAULT_CONFIG_DIR, load_market
from locpipe.media.ffmpeg import ffmpeg_exe
from locpipe.media.probe import probe
from locpipe.render.encode import render_export
from locpipe.watermark import ab
from locpipe.watermark.detect import R_THRESHOLD, axis_basis, sample_luma, trace, trace_samples
from locpipe.watermark.forensic import (
    GRID_H,
    GRID_W,
    N_CODED,
    ForensicSpec,
    forensic_graph,
    group_symbols,
    node_pattern,
    pattern_frames,
)
from locpipe.watermark.ledger import Ledger
from locpipe.watermark.payload import Payload

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "ep001.mp4"
KEY = b"benchmark-studio-key-0001"
W, H = 1080, 1920
#: what a pirate's re-upload step typically is: x264 at its default preset
REENC = ["-c:v", "libx264", "-preset", "medium", "-crf", "23", "-pix_fmt", "yuv420p", "-an"]


def attacks(duration: float) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (ffmpeg args before the input, after it); every attack re-encodes."""
    mid = max(0.0, (duration - 30.0) / 2)
    return {
        "none (the export)": ([], []),
        "H.264 CRF 28": ([], ["-c:v", "libx264", "-preset", "medium", "-crf", "28", "-an"]),
        "H.264 CRF 35": ([], ["-c:v", "libx264", "-preset", "medium", "-crf", "35", "-an"]),
        "downscale 720x1280": ([], ["-vf", "scale=720:1280", *REENC]),
        "crop 10% centre + rescale": ([], ["-vf", f"crop=iw*0.9:ih*0.9,scale={W}:{H}", *REENC]),
        "crop 10% corner + rescale": ([], ["-vf", f"crop=iw*0.9:ih*0.9:0:0,scale={W}:{H}", *REENC]),
        "brightness/contrast (eq)": ([], ["-vf", "eq=brightness=0.08:contrast=1.2", *REENC]),
        "fps 24": ([], ["-vf", "fps=24", *REENC]),
        f"30 s excerpt from {mid:.1f} s": (["-ss", f"{mid:.2f}"], ["-t", "30", *REENC]),
        "720p + 24 fps + CRF 30": ([], ["-vf", "scale=720:1280,fps=24", "-c:v", "libx264", "-preset", "medium",
                                        "-crf", "30", "-an"]),
        "crop 8% + 720p + CRF 32": ([], ["-vf", "crop=iw*0.92:ih*0.92:iw*0.06:ih*0.02,scale=720:1280", "-c:v",
                                         "libx264", "-preset", "medium", "-crf", "32", "-an"]),
    }


def ffmpeg(*args: str) -> str:
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *args], capture_output=True, text=True)
    if proc.returncode:
        sys.exit(f"ffmpeg failed: {proc.stderr[-800:]}")
    return proc.stderr


def psnr(a: Path, b: Path) -> tuple[float, float]:
    """(Y PSNR over the whole clip, lowest per-frame Y PSNR)."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-i", str(a), "-i", str(b), "-lavfi",
                           "[0:v][1:v]psnr=stats_file=-", "-f", "null", "-"], capture_output=True, text=True,
                          check=True)
    y = float(re.search(r"PSNR y:([\d.]+|inf)", proc.stderr).group(1))
    frames = [float(v) for v in re.findall(r"psnr_y:([\d.]+)", proc.stdout)]
    return y, min(frames) if frames else y


def mark_alone_psnr(payload: Payload) -> float:
    """Y PSNR of the mark itself (the upscaled pattern over one period, no encoder): what
    the blend adds; the PSNR against the unmarked render also holds x264's different
    rounding of two different inputs."""
    frames = pattern_frames(node_pattern(payload, KEY)).astype(np.float64) - 128.0
    by, bx = axis_basis(H, GRID_H, 0.0, 1.0), axis_basis(W, GRID_W, 0.0, 1.0)
    mse = np.mean([np.mean((by @ f @ bx.T) ** 2) for f in frames])
    return 10 * np.log10(255.0 ** 2 / mse)


def filter_cost(work: Path, payload: Payload, seconds: float = 10.0, reps: int = 3) -> float:
    """Extra ffmpeg milliseconds per 1080x1920 frame for the mark's filters (no decode, no
    encode: a flat grey source, best of ``reps``)."""
    g = forensic_graph(payload, width=W, height=H, key=KEY, work_dir=work, input_index=1, in_label="vb",
                       out_label="v")
    src = ["-f", "lavfi", "-i", f"color=c=gray:size={W}x{H}:rate=30:duration={seconds}"]
    runs: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for marked in (False, True):
            graph = f"[0:v]format=yuv420p[vb];{g.fragment}" if marked else "[0:v]format=yuv420p[v]"
            extra = g.input_args if marked else []
            t0 = time.perf_counter()
            ffmpeg(*src, *extra, "-filter_complex", graph, "-map", "[v]", "-t", str(seconds), "-f", "null", "-")
            runs[marked].append(time.perf_counter() - t0)
    return 1000 * (min(runs[True]) - min(runs[False])) / (seconds * 30)


def row(name: str, video: Path, key: bytes, truth: np.ndarray | None, expected: Payload | None = None) -> str:
    t0 = time.perf_counter()
    r = trace(video, key)
    secs = time.perf_counter() - t0
    acc = f"{np.mean(np.sign(r.soft) == truth):.3f}" if truth is not None else "-"
    ok = "-" if expected is None else ("yes" if r.payload == expected else "NO")
    return (f"| {name:30s} | {acc:>8s} | {ok:>7s} | {str(r.found):>5s} | {r.statistic:6.1f} | {r.p_value:8.1g} "
            f"| {r.null_max:8.1f} | {r.bit_errors:>6d} | {secs:7.1f} |")


def header() -> str:
    head = (f"| {'attack':30s} | {'bit acc':>8s} | {'decoded':>7s} | {'found':>5s} | {'R':>6s} | {'p-value':>8s} "
            f"| {'null max':>8s} | {'errors':>6s} | {'trace s':>7s} |")
    return head + "\n" + re.sub(r"[^|]", "-", head)


def render_pair(work: Path, reps: int) -> tuple[Path, Path, Payload, float, float, float]:
    """The sample rendered for `us` without and with the mark: (plain, marked, payload,
    plain seconds, marked seconds, source seconds)."""
    market = load_market(DEFAULT_CONFIG_DIR, "us")
    info = probe(SAMPLE)
    wav = work / "mix.wav"
    ffmpeg("-i", str(SAMPLE), "-vn", "-ac", "2", "-ar", "48000", str(wav))
    track = SubtitleTrack(language="en", events=[])
    ledger = work / "forensic-ledger.sqlite"
    times: dict[bool, list[float]] = {False: [], True: []}
    results = {}
    for _ in range(reps):
        for marked in (False, True):
            spec = ForensicSpec(key=KEY, ledger=ledger, export_file=str(work / "us" / "ep001.mp4")) if marked else None
            out_dir = work / ("marked" if marked else "plain")
            results[marked] = render_export(info, wav, track, work, market, episode="ep001",
                                            distributor="bench-distributor", export_id="bench0001", out_dir=out_dir,
                                            forensic=spec)
            times[marked].append(results[marked].ffmpeg_seconds)
    payload = Payload.from_hex(results[True].forensic_payload)
    return (work / "plain" / "export.mp4", work / "marked" / "export.mp4", payload, min(times[False]),
            min(times[True]), info.duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "watermark")
    parser.add_argument("--reps", type=int, default=1, help="renders per variant for the cost figure (best of)")
    parser.add_argument("--section", choices=("all", "single", "ab"), default="all",
                        help="single-layer section, A/B section, or both")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.section in ("all", "single"):
        single_section(out, args.reps)
    if args.section in ("all", "ab"):
        ab_section(out)


def single_section(out: Path, reps: int) -> None:
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        plain, marked, payload, t_plain, t_mark, duration = render_pair(Path(tmp), reps)
        plain = plain.replace(out / "plain.mp4")
        marked = marked.replace(out / "marked.mp4")
    y, y_min = psnr(marked, plain)
    truth = group_symbols(payload)[:N_CODED]

    print(f"\n## forensic watermark: {duration:.1f} s {SAMPLE.name} rendered for `us` ({W}x{H}), "
          f"payload {payload.hex}")
    print(f"render (ffmpeg) {t_plain:.1f} s unmarked, {t_mark:.1f} s marked: embed cost "
          f"{t_mark - t_plain:+.1f} s ({100 * (t_mark / t_plain - 1):+.1f}%, best of {reps})")
    print(f"mark's filters alone (scale + blend, no encode): {filter_cost(out, payload):+.2f} ms per frame")
    print(f"PSNR marked vs unmarked render: Y {y:.2f} dB (lowest frame {y_min:.2f} dB); "
          f"the mark alone: Y {mark_alone_psnr(payload):.2f} dB")
    print(f"found = R >= {R_THRESHOLD:g} and a valid CRC-8; bit acc = raw coded bits (of {N_CODED}) before "
          "Viterbi; errors = coded bits against the decoded codeword\n")
    print(header())
    for i, (name, (pre, post)) in enumerate(attacks(duration).items()):
        video = marked
        if pre or post:
            video = out / f"attack{i}.mp4"
            ffmpeg(*pre, "-i", str(marked), *post, str(video))
        print(row(name, video, KEY, truth, payload), flush=True)

    print("\nunmarked videos and a wrong key (must all be found=False):\n")
    print(header())
    plain35 = out / "plain-crf35.mp4"
    ffmpeg("-i", str(plain), "-c:v", "libx264", "-preset", "medium", "-crf", "35", "-an", str(plain35))
    testsrc = out / "testsrc2.mp4"
    ffmpeg("-f", "lavfi", "-i", f"testsrc2=size={W}x{H}:rate=30:duration=20", *REENC, str(testsrc))
    print(row("unmarked export", plain, KEY, None), flush=True)
    print(row("unmarked export, CRF 35", plain35, KEY, None), flush=True)
    print(row("raw sample (720x1280)", SAMPLE, KEY, None), flush=True)
    print(row("testsrc2 20 s", testsrc, KEY, None), flush=True)
    print(row("marked export, wrong key", marked, b"another-studio-key-0002", None), flush=True)


# --------------------------------------------------------------------------- A/B section

AB_GOP = 15
AB_MEMBERS = 8
AB_MEMBER = 5  # the member whose copy is attacked
AB_OTHER = 2  # another member's copy (told apart)
#: closed GOPs of exactly AB_GOP frames: segments can be swapped by stream copy
AB_ENC = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-g", str(AB_GOP), "-keyint_min", str(AB_GOP),
          "-sc_threshold", "0", "-flags", "+cgop", "-pix_fmt", "yuv420p", "-an"]


def ab_encode(out: Path, pattern: Path | None) -> Path:
    """The sample upscaled to WxH, blended with ``pattern`` (None: unmarked), encoded in
    closed GOPs."""
    if pattern is None:
        ffmpeg("-i", str(SAMPLE), "-vf", f"scale={W}:{H},format=yuv420p", *AB_ENC, str(out))
    else:
        ffmpeg("-i", str(SAMPLE), "-i", str(pattern), "-filter_complex",
               f"[0:v]scale={W}:{H},format=yuv420p[in];[1:v]scale={W}:{H}:flags=bilinear[p];"
               "[in][p]blend=all_mode=grainmerge[out]", "-map", "[out]", *AB_ENC, str(out))
    return out


def ab_split(video: Path, folder: Path, n_frames: int) -> list[Path]:
    """Cut ``video`` into its GOP segments by stream copy."""
    folder.mkdir(parents=True, exist_ok=True)
    cuts = ",".join(str(k) for k in range(AB_GOP, n_frames, AB_GOP))
    ffmpeg("-i", str(video), "-map", "0:v", "-c", "copy", "-f", "segment", "-segment_frames", cuts,
           "-segment_format", "mp4", "-reset_timestamps", "1", str(folder / "%05d.mp4"))
    return sorted(folder.glob("*.mp4"))


def ab_assemble(out: Path, seg_a: list[Path], seg_b: list[Path], symbols: np.ndarray) -> Path:
    """A distributor's copy: segment s from A when symbols[s] = +1, else from B (stream copy)."""
    listing = out.with_suffix(".txt")
    listing.write_text("".join(f"file '{(a if c > 0 else b).resolve()}'\n" for a, b, c in zip(seg_a, seg_b, symbols)))
    ffmpeg("-f", "concat", "-safe", "0", "-i", str(listing), "-c", "copy", str(out))
    return out


def ab_trace(video: Path, book: Ledger, batch: Payload, members: list[int]) -> tuple:
    t0 = time.perf_counter()
    samples = sample_luma(video)
    r = trace_samples(samples, KEY)
    info = book.batch_info(batch)
    a = ab.trace_ab(samples, KEY, batch, members, crop=r.crop, fps=info.rate, gop=info.gop, n_frames=info.n_frames)
    return r, a, time.perf_counter() - t0


def ab_row(name: str, video: Path, book: Ledger, batch: Payload, members: list[int], expect: int | None) -> str:
    r, a, secs = ab_trace(video, book, batch, members)
    decoded = "yes" if r.payload == batch else "NO"
    right = "-" if expect is None and a.index is None else ("yes" if a.index == expect else "NO")
    best = "-" if a.best_index is None else str(a.best_index)
    return (f"| {name:30s} | {decoded:>7s} | {r.statistic:6.1f} | {str(a.determined):>10s} | {best:>4s} | {right:>5s} "
            f"| {a.score:6.2f} | {a.threshold:6.2f} | {a.null_max:6.2f} | {a.runner_up:6.2f} | {a.correlation:5.2f} "
            f"| {a.offset:7.2f} | {secs:7.1f} |")


def ab_header() -> str:
    head = (f"| {'attack':30s} | {'decoded':>7s} | {'R':>6s} | {'determined':>10s} | {'best':>4s} | {'right':>5s} "
            f"| {'score':>6s} | {'thresh':>6s} | {'null':>6s} | {'2nd':>6s} | {'corr':>5s} | {'offset':>7s} "
            f"| {'trace s':>7s} |")
    return head + "\n" + re.sub(r"[^|]", "-", head)


def ab_section(out: Path) -> None:
    import av

    work = out / "ab"
    work.mkdir(parents=True, exist_ok=True)
    with av.open(str(SAMPLE)) as c:
        n_frames = sum(1 for _ in c.demux(c.streams.video[0]) if _.size)
    fps = 30
    ledger = work / "forensic-ledger.sqlite"
    ledger.unlink(missing_ok=True)
    book = Ledger(ledger)
    names = [f"distributor-{i:02d}" for i in range(AB_MEMBERS)]
    batch, members = book.issue_batch(market="us", episode="ep001", distributors=names,
                                      export_ids=[f"ab{i:02d}" for i in range(AB_MEMBERS)], fps=fps, gop=AB_GOP,
                                      n_frames=n_frames)
    nseg = ab.n_segments_for(n_frames, AB_GOP)
    t0 = time.perf_counter()
    variants = {}
    for name, sign in (("A", 1), ("B", -1)):
        luma = ab.episode_pattern(KEY, batch, fps=fps, n_frames=n_frames, gop=AB_GOP, symbols=np.full(nseg, sign))
        variants[name] = ab_encode(work / f"variant{name}.mp4", ab.write_pattern_clip(work / f"{name}.y4m", luma, fps))
    t_variants = time.perf_counter() - t0
    plain = ab_encode(work / "plain.mp4", None)
    seg_a, seg_b = ab_split(variants["A"], work / "segA", n_frames), ab_split(variants["B"], work / "segB", n_frames)
    assert len(seg_a) == len(seg_b) == nseg, (len(seg_a), len(seg_b), nseg)
    t0 = time.perf_counter()
    copy = ab_assemble(work / f"member{AB_MEMBER}.mp4", seg_a, seg_b, ab.ab_symbols(KEY, batch, AB_MEMBER, nseg))
    t_assemble = time.perf_counter() - t0
    other = ab_assemble(work / f"member{AB_OTHER}.mp4", seg_a, seg_b, ab.ab_symbols(KEY, batch, AB_OTHER, nseg))
    y, y_min = psnr(copy, plain)
    mark_mse = np.mean([np.mean((axis_basis(H, GRID_H, 0.0, 1.0) @ (f.astype(np.float64) - 128.0)
                                 @ axis_basis(W, GRID_W, 0.0, 1.0).T) ** 2)
                        for f in ab.episode_pattern(KEY, batch, fps=fps, n_frames=60, gop=AB_GOP,
                                                    symbols=ab.ab_symbols(KEY, batch, AB_MEMBER, 4))])

    print(f"\n## A/B forensic watermark: {n_frames} frames of {SAMPLE.name} upscaled to {W}x{H}, batch "
          f"{batch.hex} of {AB_MEMBERS} distributors, GOP {AB_GOP} ({nseg} segments), member {AB_MEMBER}'s copy")
    print(f"amplitudes: common {ab.AB_COMMON_AMPLITUDE}, A/B {ab.AB_AMPLITUDE}; variants A+B encoded in "
          f"{t_variants:.1f} s, one copy assembled by stream copy in {t_assemble:.2f} s")
    print(f"PSNR member copy vs unmarked encode: Y {y:.2f} dB (lowest frame {y_min:.2f} dB); the two layers alone: "
          f"Y {10 * np.log10(255.0 ** 2 / mark_mse):.2f} dB")
    print(f"decoded = common batch payload (R >= {R_THRESHOLD:g} + CRC); score = A/B evidence in decades "
          f"(-log10 of the chance-match bound); determined needs score >= thresh (Bonferroni for "
          f"{ab.AB_FALSE_CLAIM:g} over members x offsets, and >= {ab.AB_NULL_MARGIN:g} x the null sequences' best); "
          "null = best null-sequence score, 2nd = best other member, corr = normalized correlation of the best "
          "member's sequence with the segment values (1 = every segment clear)\n")
    print(ab_header())
    for i, (name, (pre, post)) in enumerate(attacks(n_frames / fps).items()):
        video = copy
        if pre or post:
            video = work / f"attack{i}.mp4"
            ffmpeg(*pre, "-i", str(copy), *post, str(video))
        print(ab_row(name, video, book, batch, members, AB_MEMBER), flush=True)

    print("\nother copies and false-claim checks (right = the expected outcome):\n")
    print(ab_header())
    print(ab_row(f"member {AB_OTHER}'s copy", other, book, batch, members, AB_OTHER), flush=True)
    print(ab_row("variant A only", variants["A"], book, batch, members, None), flush=True)
    print(ab_row("variant B only", variants["B"], book, batch, members, None), flush=True)
    print(ab_row(f"copy {AB_MEMBER}, member not listed", copy, book, batch,
                 [j for j in members if j != AB_MEMBER], None), flush=True)
    r, a, _ = ab_trace(plain, book, batch, members)
    print(f"\nunmarked encode: common found={r.found} (R {r.statistic:.1f}); A/B best score {a.score:.2f} "
          f"(threshold {a.threshold:.2f}, null max {a.null_max:.2f}) -> determined={a.determined}")


if __name__ == "__main__":
    main()
