"""Wall time of `locpipe run`: a batch of episodes (model loads paid once), the sample against its floor, the rerun.

    .venv/bin/python benchmarks/pipeline.py [--out benchmarks/out/pipeline] [--markets us,us-social]
                                            [--episodes 6] [--skip-batch] [--skip-floor] [--skip-rerun]

Every run is ``locpipe --log-level INFO run SERIES --out OUT --markets MARKETS --jobs 1`` with a fresh
OUT (and work folder); its stderr is kept, each line prefixed with the seconds since the run started
(the CLI's text log lines carry no time), in ``OUT_DIR/<part>.log``. One run of the script prints:

1. **Batch** (``--skip-batch`` leaves it out): the sample copied as ep01 .. epN into a folder named
   ``samples`` (so the series bible ``configs/series/samples.yaml`` applies, as for the sample), each
   copy remuxed with its own metadata title (``-c copy``: same picture and sound, a different file hash,
   so the content-keyed stage cache cannot serve one episode from another), all in one run.
   Per episode its wall time, from the manifest (shared stages + its longest unit; a unit's clock
   starts after the shared stages and ends after its QC and export, so this misses only the probe)
   and, as a cross-check, from the log stamps (from the previous episode's last log line to its own;
   an episode's last step, the second market's QC, writes no line, so these shift a few seconds to
   the next episode). Goal: mean of episodes 2..N / episode 1 <= 0.8 (episode 1 pays the model
   loads). Then every ``model loaded: ...`` (a real load of weights) and ``model engine created: ...``
   (a worker made an engine) line of the run, counted per model (a load's trailing options in
   parentheses set aside: the same weights with other options are loaded again), with where it was logged
   (episode/market/stage; lines from the ASR thread have no context, they are placed by time).
   Goal: each model loaded once per process (``--jobs 1``: one process).
2. **Floor** (``--skip-floor``): the sample alone, end to end (the CLI's wall time from outside),
   against its floor = a bare x264 encode of the same outputs (one ffmpeg run: one decode, each
   market's reframe, x264 and AAC exactly as the render stage has them, no mask, subtitles or marks;
   ``benchmarks/render.py``'s approach and input loading) + transcription (the ``source_subs`` and
   ``transcribe`` stages as this run measured them: OCR with speech recognition in a thread beside it,
   model loads included). Goal: end to end / floor <= 1.3. The stage table sums every stage record of
   the manifest (``episodes[*].shared_stages``, ``units[*].stages``); the shared render runs before
   the markets' render stages adopt its files, so its ffmpeg seconds (from the render artifact) are a
   row of their own, and what no record covers (start-up, probe, manifest, QC report) is the last row.
   The "beyond floor" column says where the time above the floor goes.
3. **Unchanged rerun** (``--skip-rerun``; needs the floor's run): the same command again on the same
   OUT, every stage from the cache.

Timings are wall seconds on a shared machine: other processes (tests, other benchmarks) compete for
the cores, so repeat a run before trusting a difference of a few percent; the load average at the
start and end of each run is printed with it.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from locpipe.backends.registry import MODEL_LOADED
from locpipe.core.names import episode_name
from locpipe.core.resources import CREATED_MESSAGE
from locpipe.media.ffmpeg import run_ffmpeg

log = logging.getLogger("benchmarks.pipeline")

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "ep001.mp4"
#: the folder name of the episode copies: the series bible is found by it, as for the sample
SERIES = "samples"
LEVELS = ("debug", "info", "warning", "error", "critical")
#: stages whose time is part of the floor (transcription)
TRANSCRIPTION = ("source_subs", "transcribe")
#: the manifest's record of an episode's one ffmpeg run for every market (the markets' render
#: stages only adopt its files)
SHARED_RENDER = "render_shared"
UNRECORDED = "outside any stage record"


def _pattern(fmt: str) -> re.Pattern[str]:
    """A regex for lines logged with the %-format ``fmt`` (the pipeline's own constant)."""
    fields = {"%s": r"(.+?)", "%d": r"(\d+)", "%.2f": r"([\d.]+)"}
    parts = re.split(r"(%s|%d|%\.2f)", fmt)
    return re.compile("".join(fields.get(p, re.escape(p)) for p in parts) + "$")


LOADED_RE = _pattern(MODEL_LOADED)  # what, seconds
CREATED_RE = _pattern(CREATED_MESSAGE)  # kind:name, n in this process, seconds


# --------------------------------------------------------------------------- running locpipe


@dataclass(frozen=True)
class Line:
    """One stderr line of a run."""

    t: float  # seconds since the run started
    level: str
    where: str  # episode/market/stage, '' when the line has no episode context
    message: str

    @property
    def episode(self) -> str:
        return self.where.split("/", 1)[0]


@dataclass(frozen=True)
class Run:
    command: str
    wall: float
    lines: list[Line]
    manifest: dict
    out: Path
    load: str  # load average before -> after


def parse_line(t: float, text: str, episodes: set[str]) -> Line:
    """Split a text-formatter line: ``<level:7> [<episode>/<market>/<stage>: ]<message>``."""
    level = text[:7].strip()
    if level not in LEVELS:  # the summary table, tracebacks
        return Line(t, "", "", text)
    rest = text[8:]
    head, sep, tail = rest.partition(": ")
    if sep and " " not in head and head.split("/", 1)[0] in episodes:
        return Line(t, level, head, tail)
    return Line(t, level, "", rest)


def _load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def locpipe_run(inputs: Path, out: Path, markets: str, log_file: Path, episodes: set[str]) -> Run:
    """One ``locpipe run``; stderr stamped line by line into ``log_file`` and parsed."""
    exe = Path(sys.executable).with_name("locpipe")
    cmd = [str(exe), "--log-level", "INFO", "run", str(inputs), "--out", str(out), "--markets", markets,
           "--jobs", "1"]
    log.info("running %s (log: %s)", shlex.join(cmd), log_file)
    lines: list[Line] = []
    load = _load_average()
    started = time.perf_counter()
    with log_file.open("w", encoding="utf-8") as stamped, log_file.with_suffix(".stdout").open("w") as stdout:
        stamped.write(f"# {shlex.join(cmd)}\n")
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=stdout, stderr=subprocess.PIPE, text=True, errors="replace")
        for raw in proc.stderr:  # Python's stderr is line-buffered: a line arrives when it is logged
            t = time.perf_counter() - started
            stamped.write(f"{t:9.3f} {raw}")
            lines.append(parse_line(t, raw.rstrip("\n"), episodes))
        code = proc.wait()
    wall = time.perf_counter() - started
    manifest_path = out / "manifest.json"
    if not manifest_path.exists():
        sys.exit(f"locpipe run exited {code} without a manifest; see {log_file}")
    if code != 0:
        log.warning("locpipe run exited %d (some unit failed); see %s", code, log_file)
    return Run(shlex.join(cmd), wall, lines, json.loads(manifest_path.read_text()), out,
               f"{load} -> {_load_average()}")


# --------------------------------------------------------------------------- manifest


def stage_sums(manifest: dict) -> dict[str, list[float]]:
    """stage -> [seconds, fresh runs, cached runs] over every record, in pipeline order."""
    sums: dict[str, list[float]] = {}
    records = [s for ep in manifest["episodes"] for s in ep["shared_stages"]]
    records += [s for unit in manifest["units"] for s in unit["stages"]]
    for s in records:
        row = sums.setdefault(s["stage"], [0.0, 0, 0])
        row[0] += s["seconds"]
        row[2 if s["cached"] else 1] += 1
    return sums


def shared_render_seconds(manifest: dict) -> dict[str, float]:
    """Per episode: seconds of its shared render run (its ``render_shared`` record; 0 when cached)."""
    return {ep["episode"]: sum(s["seconds"] for s in ep["shared_stages"] if s["stage"] == SHARED_RENDER)
            for ep in manifest["episodes"]}


def episode_walls(manifest: dict) -> dict[str, float]:
    """Per episode: its shared stages plus its longest unit (units start after the shared stages)."""
    longest: dict[str, float] = defaultdict(float)
    for unit in manifest["units"]:
        longest[unit["episode"]] = max(longest[unit["episode"]], unit["seconds"])
    # a unit's clock runs from before the first market's stages to its export, so it already
    # covers the shared render: only the recognition stages are added
    return {ep["episode"]: sum(s["seconds"] for s in ep["shared_stages"] if s["stage"] != SHARED_RENDER)
            + longest[ep["episode"]] for ep in manifest["episodes"]}


# --------------------------------------------------------------------------- log lines


def episode_ends(lines: list[Line], names: list[str]) -> dict[str, float]:
    """Stamp of each episode's last line with its context."""
    ends = {}
    for line in lines:
        if line.episode in names:
            ends[line.episode] = line.t
    return ends


def episode_at(t: float, ends: dict[str, float], names: list[str]) -> str:
    """The episode running at ``t`` (``--jobs 1``: episodes one after another)."""
    return next((n for n in names if n in ends and t <= ends[n]), "after the last episode")


def log_walls(lines: list[Line], names: list[str]) -> dict[str, float]:
    """Per episode: from the previous episode's last line (the first episode: the run's first
    line) to its own last line."""
    ends = episode_ends(lines, names)
    start = lines[0].t if lines else 0.0
    walls = {}
    for n in names:
        if n in ends:
            walls[n] = ends[n] - start
            start = ends[n]
    return walls


@dataclass(frozen=True)
class Load:
    kind: str  # "model loaded" | "engine created"
    what: str
    seconds: float
    where: str


def model_loads(lines: list[Line], names: list[str]) -> list[Load]:
    """Every model load and engine creation line, placed in its episode (by time when it has no context)."""
    ends = episode_ends(lines, names)
    loads = []
    for line in lines:
        where = line.where or f"{episode_at(line.t, ends, names)} (no context)"
        if m := LOADED_RE.match(line.message):
            loads.append(Load("model loaded", m[1], float(m[2]), where))
        elif m := CREATED_RE.match(line.message):
            loads.append(Load("engine created", m[1], float(m[3]), where))
    return loads


# --------------------------------------------------------------------------- tables


def table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    return [f"| {' | '.join(header)} |", f"|{'---|' * len(header)}",
            *(f"| {' | '.join(str(c) for c in row)} |" for row in rows)]


def emit(lines: list[str], report: Path) -> None:
    """Print a figure and append it to the report file (earlier figures survive a later failure)."""
    text = "\n".join(lines) + "\n"
    print(text, flush=True)
    with report.open("a", encoding="utf-8") as f:
        f.write(text + "\n")


def _goal(value: float, limit: float) -> str:
    return f"<= {limit} ({'met' if value <= limit else 'not met'})"


# --------------------------------------------------------------------------- 1. batch


def make_series(folder: Path, n: int) -> list[Path]:
    """ep01 .. epN: the sample remuxed (``-c copy``) with title epK, so every copy hashes differently."""
    folder.mkdir(parents=True)
    paths = []
    for k in range(1, n + 1):
        path = folder / f"ep{k:02d}.mp4"
        run_ffmpeg(["-i", str(SAMPLE), "-map", "0", "-c", "copy", "-metadata", f"title=ep{k:02d}", str(path)],
                   what=f"remux of {path.name}")
        paths.append(path)
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
    if len(digests) != n:
        sys.exit(f"{folder}: the remuxed copies are not all different ({len(digests)} hashes for {n} files)")
    return paths


def batch_figure(out: Path, markets: str, n: int) -> list[str]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    names = [episode_name(p) for p in make_series(out / SERIES, n)]
    log_file = out.parent / "batch.log"
    run = locpipe_run(out / SERIES, out / "out", markets, log_file, set(names))
    manifest_walls, stamped = episode_walls(run.manifest), log_walls(run.lines, names)
    loads = model_loads(run.lines, names)
    report = [f"## 1. batch: {n} episodes x {markets}, one run, --jobs 1: {run.wall:.1f} s wall "
              f"(load average {run.load})", "", f"    {run.command}", ""]
    renders = shared_render_seconds(run.manifest)
    report += _episode_table(names, manifest_walls, stamped, loads, run.manifest, renders)
    report += [""] + _ratio_rows(names, manifest_walls, stamped)
    report += ["", f"### model loads over the whole run (lines of {log_file})", ""]
    report += _load_table(loads)
    return report


def _episode_table(names: list[str], manifest_walls: dict[str, float], stamped: dict[str, float],
                   loads: list[Load], manifest: dict, renders: dict[str, float]) -> list[str]:
    shared = {ep["episode"]: sum(s["seconds"] for s in ep["shared_stages"] if s["stage"] != SHARED_RENDER)
              for ep in manifest["episodes"]}
    rows = []
    for n in names:
        here = [ld for ld in loads if ld.where.split("/", 1)[0].split(" ", 1)[0] == n and ld.kind == "model loaded"]
        rows.append((n, f"{manifest_walls.get(n, 0.0):.1f}", f"{stamped.get(n, 0.0):.1f}", f"{shared.get(n, 0.0):.1f}",
                     f"{renders.get(n, 0.0):.1f}", f"{len(here)} ({sum(ld.seconds for ld in here):.1f} s)"))
    return table(("episode", "wall s (manifest)", "wall s (log stamps)", "shared stages s", "shared render s",
                  "model loads"), rows)


def _ratio_rows(names: list[str], manifest_walls: dict[str, float], stamped: dict[str, float]) -> list[str]:
    rows = []
    for label, walls in (("manifest", manifest_walls), ("log stamps", stamped)):
        first, rest = walls.get(names[0], 0.0), [walls[n] for n in names[1:] if n in walls]
        if not first or not rest:
            continue
        mean = sum(rest) / len(rest)
        rows.append((label, f"{first:.1f}", f"{mean:.1f}", f"{mean / first:.2f}", _goal(mean / first, 0.8)))
    return table(("source", f"{names[0]} s", f"mean {names[1]}..{names[-1]} s", "ratio", "goal"), rows)


def model_of(what: str) -> str:
    """The model a load line names, without its trailing options ("(task=translate, 2 threads)",
    "(22050 Hz)"): one model loaded with other options is still loaded again."""
    return re.sub(r"\s*\([^()]*\)$", "", what)


def _load_table(loads: list[Load]) -> list[str]:
    grouped: dict[tuple[str, str], list[Load]] = defaultdict(list)
    for ld in loads:
        grouped[(ld.kind, model_of(ld.what) if ld.kind == "model loaded" else ld.what)].append(ld)
    rows = []
    for (kind, what), group in sorted(grouped.items()):
        where = "; ".join(ld.where + ("" if ld.what == what else f" `{ld.what[len(what):].strip()}`") for ld in group)
        rows.append((kind, f"`{what}`", len(group), f"{sum(ld.seconds for ld in group):.2f}", where,
                     "yes" if len(group) == 1 else "**no**"))
    return table(("line", "model / engine", "times", "seconds", "logged in", "once per process"), rows)


# --------------------------------------------------------------------------- 2. floor


def _render_bench() -> ModuleType:
    """benchmarks/render.py (imports and definitions only) for its input loading and clock."""
    spec = importlib.util.spec_from_file_location("benchmarks_render", ROOT / "benchmarks" / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def bare_encode(run: Run, codes: list[str]):
    """The render's outputs with nothing but reframe + x264 + AAC, in one ffmpeg run from one decode
    (benchmarks/render.py's measurement; the input matrix as ``locpipe.render.encode.run_shared``
    picks it, from the tag recorded at ingest). Returns render.py's Timed (wall, child CPU)."""
    from locpipe.config import DEFAULT_CONFIG_DIR, load_market
    from locpipe.render import graph

    bench = _render_bench()
    episode_dir = next((run.out / ".locpipe-work" / "episodes").glob(f"{SAMPLE.stem}-*"))
    markets = {c: load_market(DEFAULT_CONFIG_DIR, c) for c in codes}
    inputs = {c: bench.market_inputs(episode_dir, m) for c, m in markets.items()}
    source = inputs[codes[0]].source
    with tempfile.TemporaryDirectory(dir=run.out.parent, prefix=".bare-") as tmp:
        encodes = [graph.Encode(m.profile, None, Path(tmp) / f"bare-{c}.mp4", audio_wav=inputs[c].wav)
                   for c, m in markets.items()]
        matrix = graph.input_matrix(source.color_matrix, source.width, source.height)
        args = graph.shared_render_args(source, encodes, matrix=matrix)
        log.info("bare encode of %s for %s", SAMPLE.name, ", ".join(codes))
        with bench.Clock() as clock:
            run_ffmpeg(args, what="bare encode")
    return clock.t


def floor_run(out: Path, markets: str) -> Run:
    """The sample alone (copied into OUT/samples: the series state stays out of the repo's samples/)."""
    shutil.rmtree(out, ignore_errors=True)
    (out / SERIES).mkdir(parents=True)
    shutil.copyfile(SAMPLE, out / SERIES / SAMPLE.name)
    return locpipe_run(out / SERIES, out / "out", markets, out.parent / "floor.log", {SAMPLE.stem})


def stage_table(run: Run, floor_parts: dict[str, float] | None = None) -> list[str]:
    """Seconds per stage (plus the shared render and what no record covers) and, given the floor's
    parts per row, the seconds beyond the floor."""
    sums = stage_sums(run.manifest)
    rows = [(name, sec, f"{int(fresh)} fresh, {int(cached)} cached") for name, (sec, fresh, cached) in sums.items()]
    rows.append((UNRECORDED, run.wall - sum(r[1] for r in rows), "start-up, probe, manifest, QC report"))
    header = ("stage", "seconds", "share of wall", "records")
    if floor_parts is None:
        return table(header, [(n, f"{s:.2f}", f"{s / run.wall:.1%}", k) for n, s, k in rows])
    return table((*header, "beyond floor s"),
                 [(n, f"{s:.2f}", f"{s / run.wall:.1%}", k, f"{s - floor_parts.get(n, 0.0):.2f}") for n, s, k in rows])


def floor_figure(out: Path, markets: str) -> tuple[list[str], Run]:
    run = floor_run(out, markets)
    codes = [c.strip() for c in markets.split(",") if c.strip()]
    bare = bare_encode(run, codes)
    sums = stage_sums(run.manifest)
    transcription = sum(sums.get(s, [0.0])[0] for s in TRANSCRIPTION)
    floor = bare.wall + transcription
    duration = sum(ep["duration"] for ep in run.manifest["episodes"])
    ratio = run.wall / floor
    rows = [
        ("end to end: `locpipe run` of the sample (wall from outside)", f"{run.wall:.1f}"),
        ("  the CLI's own clock (manifest last_run.seconds)", f"{run.manifest['last_run']['seconds']:.1f}"),
        (f"bare x264 encode of the same {len(codes)} outputs, one decode ({bare.cpu:.1f} s child CPU)",
         f"{bare.wall:.1f}"),
        ("transcription: source_subs + transcribe stages of this run", f"{transcription:.1f}"),
        ("**floor** = bare encode + transcription", f"{floor:.1f}"),
        (f"**end to end / floor** (goal {_goal(ratio, 1.3)})", f"{ratio:.2f}"),
    ]
    parts = {s: sums[s][0] for s in TRANSCRIPTION if s in sums} | {SHARED_RENDER: bare.wall}
    report = [f"## 2. floor: {SAMPLE.name} ({duration:.1f} s) x {markets}, fresh, --jobs 1 "
              f"(load average {run.load})", "", f"    {run.command}", ""]
    report += table(("measurement", "seconds"), rows)
    report += ["", f"### where the {run.wall:.1f} s go (manifest stage records)", ""] + stage_table(run, parts)
    return report, run


# --------------------------------------------------------------------------- 3. rerun


def rerun_figure(fresh: Run, markets: str) -> list[str]:
    run = locpipe_run(fresh.out.parent / SERIES, fresh.out, markets, fresh.out.parent.parent / "rerun.log",
                      {SAMPLE.stem})
    return ([f"## 3. unchanged rerun of the floor's run: {run.wall:.1f} s wall (fresh {fresh.wall:.1f} s; "
             f"load average {run.load})", ""] + stage_table(run))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pipeline",
                        help="folder of the runs, their logs and report.md")
    parser.add_argument("--markets", default="us,us-social", help="comma-separated market codes")
    parser.add_argument("--episodes", type=int, default=6, help="episodes of the batch figure (at least 2)")
    parser.add_argument("--skip-batch", action="store_true", help="leave out the batch figure (1.)")
    parser.add_argument("--skip-floor", action="store_true", help="leave out the floor figure and the rerun (2., 3.)")
    parser.add_argument("--skip-rerun", action="store_true", help="leave out the unchanged rerun (3.)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    report = out / "report.md"
    report.write_text(f"# pipeline benchmark ({time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores)\n\n")
    if not args.skip_batch:
        emit(batch_figure(out / "batch", args.markets, max(2, args.episodes)), report)
    if not args.skip_floor:
        lines, fresh = floor_figure(out / "floor", args.markets)
        emit(lines, report)
        if not args.skip_rerun:
            emit(rerun_figure(fresh, args.markets), report)
    log.info("report: %s", report)


if __name__ == "__main__":
    main()
