"""Wall time of `locpipe run` on the bundled sample, split by stage; then the cached rerun.

    .venv/bin/python benchmarks/pipeline.py [--markets us,us-social] [--out benchmarks/out/pipeline]

Prints one table per run (fresh work directory, then an unchanged rerun) with each stage's
seconds as recorded in the manifest, and the real-time factor against the sample's length.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run(out: Path, markets: str) -> float:
    exe = Path(sys.executable).with_name("locpipe")
    started = time.perf_counter()
    subprocess.run([str(exe), "--log-level", "WARNING", "run", str(ROOT / "samples"), "--out", str(out),
                    "--markets", markets, "--distributor", "bench"], check=True, capture_output=True)
    return time.perf_counter() - started


def stage_table(out: Path) -> tuple[dict[str, float], float]:
    manifest = json.loads((out / "manifest.json").read_text())
    seconds: dict[str, float] = defaultdict(float)
    for ep in manifest["episodes"]:
        for s in ep["shared_stages"]:
            seconds[s["stage"]] += s["seconds"]
    for unit in manifest["units"]:
        for s in unit["stages"]:
            seconds[f"{s['stage']} [{unit['market']}]"] += s["seconds"]
    duration = sum(ep["duration"] for ep in manifest["episodes"])
    return dict(seconds), duration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--markets", default="us,us-social")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "pipeline")
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    for label in ("fresh run", "unchanged rerun"):
        wall = run(args.out, args.markets)
        seconds, duration = stage_table(args.out)
        print(f"\n## {label}: {wall:.1f} s wall for {duration:.1f} s of video x {args.markets} "
              f"(RTF {wall / duration:.2f})")
        print(f"{'stage':32s} {'seconds':>8s} {'share':>6s}")
        total = sum(seconds.values()) or 1.0
        for name, sec in seconds.items():
            print(f"{name:32s} {sec:8.2f} {sec / total:6.1%}")


if __name__ == "__main__":
    main()
