"""Render farm on a local Redis: 1 vs 2 workers, recovery from a SIGKILLed worker, A/B distributors.

Sections (``--section speedup,recovery,ab``, default all):

* **speedup**: each configuration starts from an empty work dir and output folder, starts
  its workers (every queue: asr,tts,render, concurrency 1), submits the series with
  ``locpipe farm submit --wait`` and measures until every unit is exported;
* **recovery**: 2 workers with the default lease settings (TTL 30 s, reaper every 10 s, the
  visibility timeout left at 6 h); as soon as a unit runs, its whole worker is SIGKILLed
  (process group: worker, pool process, ffmpeg). Reports the time from the kill to the
  requeue (lease expiry + reaper), to the unit running again on the other worker, and to
  its export; and checks exactly once (one commit, one ledger row per export);
* **ab**: one episode for ``--ab-market`` to 1 distributor (a full render unit) and to
  ``--distributors`` N (one A/B base unit + N copy units), on one worker: the render
  phase of each unit from its record, so the marginal cost of a distributor is the mean
  copy unit against the full render.

    .venv/bin/python benchmarks/farm.py                       # 2 copies of the sample, us-social
    .venv/bin/python benchmarks/farm.py --episodes 4 --seconds 12 --small --markets us-social

``--seconds`` cuts the sample shorter, ``--small`` renders at 360x640 (cheaper, same work shape).
Both workers share this machine's cores: the ratio says how well the farm keeps two workers
busy here, not what two machines would give.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from locpipe.config import DEFAULT_CONFIG_DIR  # noqa: E402
from locpipe.farm.lease import REQUEUED, client_for  # noqa: E402
from locpipe.farm.localredis import LocalRedis  # noqa: E402
from locpipe.farm.state import FarmState  # noqa: E402
from locpipe.media.ffmpeg import ffmpeg_exe  # noqa: E402

LOCPIPE = str(Path(sys.executable).with_name("locpipe"))
SAMPLE = ROOT / "samples" / "ep001.mp4"


def make_series(folder: Path, episodes: int, seconds: float | None) -> Path:
    folder.mkdir(parents=True)
    for i in range(1, episodes + 1):
        dst = folder / f"ep{i:03d}.mp4"
        if seconds:
            subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-ss", "0", "-i", str(SAMPLE),
                            "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", str(dst)],
                           check=True)
        else:
            shutil.copy(SAMPLE, dst)
    return folder


def small_configs(dst: Path) -> Path:
    """The bundled configs at a third of the size (frame, safe zones, subtitle sizes and margins)."""
    import re

    third = lambda m: f"{m.group(1)}{int(m.group(2)) // 3}"  # noqa: E731
    shutil.copytree(DEFAULT_CONFIG_DIR, dst)
    for path in (dst / "profiles").glob("*.yaml"):
        text = path.read_text().replace("width: 1080", "width: 360").replace("height: 1920", "height: 640")
        text = re.sub(r"((?:x0|y0|x1|y1): )(\d+)", third, text)
        path.write_text(text.replace("preset: veryfast", "preset: ultrafast"))
    for path in (dst / "markets").glob("*.yaml"):
        path.write_text(re.sub(r"(\b(?:size|margin_bottom|margin_sides): )(\d+)", third, path.read_text()))
    return dst


def start_workers(tmp: Path, tag: str, n: int, env: dict, concurrency: int = 1) -> list[subprocess.Popen]:
    procs = []
    for i in range(n):
        log = (tmp / f"worker-{tag}-{i}.log").open("w")
        procs.append(subprocess.Popen([LOCPIPE, "--log-level", "INFO", "farm", "worker", "--queues", "asr,tts,render",
                                       "--concurrency", str(concurrency), "--hostname", f"bench{i}@%h"], stdout=log,
                                      stderr=subprocess.STDOUT, env=env, start_new_session=True))
    time.sleep(3)
    return procs


def stop_workers(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(60)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def submit(series: Path, markets: str, out: Path, work: Path, env: dict, *extra: str) -> list[str]:
    proc = subprocess.run([LOCPIPE, "farm", "submit", str(series), "--markets", markets, "--out", str(out),
                           "--work", str(work), *extra], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"submit exited {proc.returncode}: {proc.stderr[-2000:]}")
    return [json.loads(line)["unit"] for line in proc.stdout.splitlines() if line.startswith("{")]


def run_farm(tmp: Path, series: Path, markets: str, workers: int, env: dict) -> float:
    redis = LocalRedis(tmp / f"redis-{workers}").start()
    out, work = tmp / f"out-{workers}", tmp / f"work-{workers}"
    full_env = {**os.environ, **env, "LOCPIPE_BROKER_URL": redis.url}
    procs = []
    try:
        procs = start_workers(tmp, str(workers), workers, full_env)
        started = time.perf_counter()
        submit(series, markets, out, work, full_env, "--distributor", "bench", "--wait")
        return time.perf_counter() - started
    finally:
        stop_workers(procs)
        redis.stop()


def recovery(tmp: Path, series: Path, markets: str, env: dict) -> dict:
    """SIGKILL the worker of the first running unit; time the takeover (module docstring)."""
    redis = LocalRedis(tmp / "redis-recovery").start()
    out, work = tmp / "out-recovery", tmp / "work-recovery"
    ledger = tmp / "ledger-recovery.sqlite"
    full_env = {**os.environ, **env, "LOCPIPE_BROKER_URL": redis.url}
    state = FarmState(out)
    procs = []
    try:
        procs = start_workers(tmp, "recovery", 2, full_env)
        ids = submit(series, markets, out, work, full_env, "--distributor", "bench", "--ledger", str(ledger))
        while True:
            running = [r for r in state.records() if r.status == "running" and r.pid and r.role != "asr"]
            if running and running[0].phase in ("tts", "render"):
                break
            time.sleep(0.2)
        victim_rec = running[0]
        victim = next(p for p in procs if os.getpgid(victim_rec.pid) == p.pid)
        killed = time.time()
        os.killpg(victim.pid, signal.SIGKILL)
        victim.wait(10)
        requeued = running_again = None
        while True:
            rec = state.load(victim_rec.unit_id)
            if requeued is None:
                events = [json.loads(e) for e in client_for(redis.url).lrange(REQUEUED, 0, -1)]
                hits = [e["time"] for e in events if e["unit"] == victim_rec.unit_id]
                requeued = min(hits) if hits else None
            if running_again is None and rec.status == "running" and rec.node != victim_rec.node:
                running_again = time.time()
            if all((state.load(i) or rec).status in ("ok", "failed") for i in ids):
                break
            time.sleep(0.2)
        done = time.time()
        final = state.load(victim_rec.unit_id)
        rows = []
        if ledger.is_file():  # markets without the forensic mark issue no payload
            con = sqlite3.connect(ledger)
            try:
                rows = con.execute("SELECT export_id, COUNT(*) FROM payloads GROUP BY export_id").fetchall()
            except sqlite3.OperationalError:
                rows = []
            con.close()
        return {"unit": victim_rec.unit_id, "phase": victim_rec.phase,
                "requeued_s": (requeued - killed) if requeued else None,
                "running_again_s": (running_again - killed) if running_again else None,
                "done_s": done - killed, "commits": final.commits, "attempts": final.attempts,
                "status": final.status, "ledger_rows_per_export": sorted({n for _x, n in rows}) or "no payloads"}
    finally:
        stop_workers([p for p in procs if p.poll() is None])
        redis.stop()


def ab_cost(tmp: Path, series: Path, market: str, distributors: int, env: dict) -> dict:
    """Render-phase seconds: a full render unit (1 distributor) vs the A/B base and each copy unit."""
    redis = LocalRedis(tmp / "redis-ab").start()
    full_env = {**os.environ, **env, "LOCPIPE_BROKER_URL": redis.url}
    names = ",".join(f"dist{i:02d}" for i in range(distributors))
    procs = []
    try:
        procs = start_workers(tmp, "ab", 1, full_env)
        work = tmp / "work-ab"  # shared: the transcript and the mix are made once
        submit(series, market, tmp / "out-ab-1", work, full_env, "--distributor", "solo", "--wait")
        submit(series, market, tmp / "out-ab-n", work, full_env, "--distributor", names, "--wait")
    finally:
        stop_workers(procs)
        redis.stop()
    single = [r for r in FarmState(tmp / "out-ab-1").records() if r.role == "export"]
    many = FarmState(tmp / "out-ab-n").records()
    base = [r for r in many if r.role == "ab-base"]
    copies = [r.phase_seconds.get("render", 0.0) for r in many if r.role == "ab-copy"]
    full = single[0].phase_seconds.get("render", 0.0)

    def stage(out: Path, name: str) -> list[float]:
        """Seconds of stage ``name`` (made, not cached) in each unit of OUT's manifest."""
        units = json.loads((out / "manifest.json").read_text())["units"]
        return [s["seconds"] for u in units for s in u["stages"] if s["stage"] == name and not s["cached"]]

    assembly, copy_qc = stage(tmp / "out-ab-n", "render"), stage(tmp / "out-ab-n", "qc")
    return {"full_render_s": full, "base_s": base[0].phase_seconds.get("render", 0.0),
            "copy_mean_s": sum(copies) / len(copies), "copies": len(copies),
            "full_stage_s": stage(tmp / "out-ab-1", "render")[0], "assembly_mean_s": sum(assembly) / len(assembly),
            "copy_qc_mean_s": sum(copy_qc) / len(copy_qc), "ok": all(r.status == "ok" for r in many)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, help="cut each episode to this length")
    ap.add_argument("--markets", default="us-social")
    ap.add_argument("--small", action="store_true", help="render at 360x640")
    ap.add_argument("--section", default="speedup,recovery,ab", help="comma list of speedup, recovery, ab")
    ap.add_argument("--ab-market", default="us", help="market of the A/B section (us: forensic A/B base)")
    ap.add_argument("--distributors", type=int, default=4, help="distributors of the A/B section")
    args = ap.parse_args()
    sections = set(args.section.split(","))
    with tempfile.TemporaryDirectory(prefix="locpipe-farm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        series = make_series(tmp / "series", args.episodes, args.seconds)
        # the default lease settings; the visibility timeout stays the production backstop
        env = {"LOCPIPE_FARM_VISIBILITY_TIMEOUT": "21600", "XDG_DATA_HOME": str(tmp / "house")}
        if args.small:
            env["LOCPIPE_CONFIG_DIR"] = str(small_configs(tmp / "configs"))
        print(f"series: {args.episodes} episode(s) x {args.markets}; "
              f"{'cut to ' + str(args.seconds) + ' s' if args.seconds else 'full sample'}; "
              f"{'360x640' if args.small else 'full-size'} render; {os.cpu_count()} cores")
        if "speedup" in sections:
            times = {n: run_farm(tmp, series, args.markets, n, env) for n in (1, 2)}
            units = args.episodes * len(args.markets.split(","))
            print(f"{'workers':>8} {'wall s':>8} {'units/min':>10}")
            for n, sec in times.items():
                print(f"{n:>8} {sec:>8.1f} {units / sec * 60:>10.2f}")
            print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x")
        if "recovery" in sections:
            r = recovery(tmp, series, args.markets, env)
            fmt = lambda v: "-" if v is None else f"{v:.1f} s"  # noqa: E731
            print(f"recovery (lease TTL 30 s, reaper 10 s): worker of {r['unit']} SIGKILLed in {r['phase']}; "
                  f"requeued after {fmt(r['requeued_s'])}, running on the other worker after "
                  f"{fmt(r['running_again_s'])}, series done {fmt(r['done_s'])} after the kill; unit {r['status']}, "
                  f"commits {r['commits']}, attempts {r['attempts']}; ledger rows per export "
                  f"{r['ledger_rows_per_export']}")
        if "ab" in sections:
            one = series / "ep001.mp4"
            ab_series = tmp / "ab-series"
            ab_series.mkdir()
            shutil.copy(one, ab_series / "ep001.mp4")
            a = ab_cost(tmp, ab_series, args.ab_market, args.distributors, env)
            print(f"A/B on the farm ({args.ab_market}, {a['copies']} distributors, all ok: {a['ok']}): render phase "
                  f"of a full-render unit {a['full_render_s']:.1f} s; A/B base unit {a['base_s']:.1f} s "
                  f"({a['base_s'] / a['full_render_s']:.2f}x); per distributor (copy unit, mean) "
                  f"{a['copy_mean_s']:.1f} s = {a['copy_mean_s'] / a['full_render_s']:.2f} of a full render; "
                  f"{a['copies']} distributors {a['base_s'] + a['copies'] * a['copy_mean_s']:.1f} s vs "
                  f"{a['copies'] * a['full_render_s']:.1f} s as full renders")
            print(f"  inside the units: the full render stage {a['full_stage_s']:.1f} s; a distributor's windows + "
                  f"assembly (render stage of a copy) {a['assembly_mean_s']:.1f} s = "
                  f"{a['assembly_mean_s'] / a['full_stage_s']:.2f} of it; QC of each copy (forensic + A/B trace, "
                  f"loudness) {a['copy_qc_mean_s']:.1f} s; the rest of a unit is its pool process, probe and cache")


if __name__ == "__main__":
    main()
