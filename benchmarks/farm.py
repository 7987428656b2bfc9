"""Render-farm speed-up: wall time of a series through 1 worker vs 2 workers, on a local Redis.

Each configuration starts from an empty work dir and output folder, starts its workers
(every queue: asr,tts,render, concurrency 1), submits the series with ``locpipe farm
submit --wait`` and measures until every unit is exported. Prints a table and the ratio.

    .venv/bin/python benchmarks/farm.py                       # 2 copies of the sample, us-social
    .venv/bin/python benchmarks/farm.py --episodes 4 --seconds 12 --small --markets us-social

``--seconds`` cuts the sample shorter, ``--small`` renders at 360x640 (cheaper, same work shape).
Both workers share this machine's cores: the ratio says how well the farm keeps two workers
busy here, not what two machines would give.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from locpipe.config import DEFAULT_CONFIG_DIR  # noqa: E402
from locpipe.farm.localredis import LocalRedis  # noqa: E402
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
    shutil.copytree(DEFAULT_CONFIG_DIR, dst)
    for path in (dst / "profiles").glob("*.yaml"):
        text = path.read_text().replace("width: 1080", "width: 360").replace("height: 1920", "height: 640")
        path.write_text(text.replace("preset: veryfast", "preset: ultrafast"))
    return dst


def run_farm(tmp: Path, series: Path, markets: str, workers: int, env: dict) -> float:
    redis = LocalRedis(tmp / f"redis-{workers}").start()
    out, work = tmp / f"out-{workers}", tmp / f"work-{workers}"
    full_env = {**os.environ, **env, "LOCPIPE_BROKER_URL": redis.url}
    procs = []
    try:
        for i in range(workers):
            log = (tmp / f"worker-{workers}-{i}.log").open("w")
            procs.append(subprocess.Popen([LOCPIPE, "farm", "worker", "--queues", "asr,tts,render",
                                           "--hostname", f"bench{i}@%h"], stdout=log, stderr=subprocess.STDOUT,
                                          env=full_env, start_new_session=True))
        time.sleep(3)
        started = time.perf_counter()
        proc = subprocess.run([LOCPIPE, "farm", "submit", str(series), "--markets", markets, "--out", str(out),
                               "--work", str(work), "--distributor", "bench", "--wait"], env=full_env,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"submit exited {proc.returncode}: {proc.stderr[-2000:]}")
        return seconds
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(60)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)
        redis.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--episodes", type=int, default=2)
    ap.add_argument("--seconds", type=float, help="cut each episode to this length")
    ap.add_argument("--markets", default="us-social")
    ap.add_argument("--small", action="store_true", help="render at 360x640")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="locpipe-farm-bench-") as tmp_name:
        tmp = Path(tmp_name)
        series = make_series(tmp / "series", args.episodes, args.seconds)
        env = {"LOCPIPE_FARM_VISIBILITY_TIMEOUT": "7200"}
        if args.small:
            env["LOCPIPE_CONFIG_DIR"] = str(small_configs(tmp / "configs"))
        times = {n: run_farm(tmp, series, args.markets, n, env) for n in (1, 2)}
    units = args.episodes * len(args.markets.split(","))
    print(f"series: {args.episodes} episode(s) x {args.markets} = {units} unit(s); "
          f"{'cut to ' + str(args.seconds) + ' s' if args.seconds else 'full sample'}; "
          f"{'360x640' if args.small else 'full-size'} render; {os.cpu_count()} cores")
    print(f"{'workers':>8} {'wall s':>8} {'units/min':>10}")
    for n, s in times.items():
        print(f"{n:>8} {s:>8.1f} {units / s * 60:>10.2f}")
    print(f"speed-up 2 vs 1 workers: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
