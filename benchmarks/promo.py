"""Promo cuts: what 3 x 15 s clips cost next to the episode's own render (goal: <= 25%).

Two episodes:

- ``--out OUT`` of a finished ``locpipe run`` (e.g. ``locpipe run samples/ --out OUT
  --markets us,br``): the episode's render seconds come from the manifest (the shared
  render run, or the market's render stage), the promos are cut from that run's cache;
- a generated 60 s 1080x1920 episode (test patterns, scene cuts, a tone per line, a
  Chinese sidecar script; fake MT/TTS engines from the tests, real ffmpeg everywhere)
  rendered in the bundled ``app`` profile, then cut in ``social``.

For each: promo wall and CPU seconds (user+sys, this process and its ffmpeg children)
against the episode's render, the load average at the time, and the stage records that
show nothing upstream (transcribe, translate, synthesize, mix) ran again. Run it under
``flock /tmp/locpipe-bench.lock`` on a shared box.

    .venv/bin/python benchmarks/promo.py --out /tmp/p15/out --markets us,br
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def cpu() -> float:
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def forget_promos(work: Path) -> None:
    """Remove cached promo artifacts (scenes, choices, clips) so the promo is measured whole."""
    for d in work.glob("episodes/*/promo*"):
        shutil.rmtree(d, ignore_errors=True)


def render_cost(path: Path, settings, resources) -> dict:
    """The episode's render measured again: its render and QC artifacts removed, the episode
    run (every other stage is a cache hit), wall and CPU seconds of that run, and the render
    stage's own seconds from its records (the shared render run when markets share one)."""
    from locpipe.core.pipeline import run_episode

    for d in list(settings.work_dir.glob("episodes/*/render*")) + list(settings.work_dir.glob("episodes/*/qc")):
        shutil.rmtree(d, ignore_errors=True)
    c0, t0 = cpu(), time.perf_counter()
    rep = run_episode(path, settings, resources=resources)
    wall, used = time.perf_counter() - t0, cpu() - c0
    rows = [r for r in rep.shared_stages if r["stage"] == "render_shared"] or [
        r for u in rep.units for r in u.stages if r["stage"] == "render" and not r["cached"]]
    made = sorted({r["stage"] for u in rep.units for r in u.stages if not r["cached"]})
    return {"wall": wall, "cpu": used, "render": sum(r["seconds"] for r in rows), "markets": len(rep.units),
            "made": made, "load": os.getloadavg()}


def measure(path: Path, settings, resources, *, length: float, count: int) -> dict:
    from locpipe.core.promo import promo_episode

    forget_promos(settings.work_dir)
    load = os.getloadavg()
    c0, t0 = cpu(), time.perf_counter()
    docs = promo_episode(path, settings, resources, length=length, count=count)
    wall, used = time.perf_counter() - t0, cpu() - c0
    made = sorted({s for d in docs for s in d.get("made_stages", [])})
    clips = [c for d in docs for c in d.get("clips", [])]
    return {"wall": wall, "cpu": used, "load": load, "made": made, "clips": len(clips),
            "ffmpeg": sum(c["ffmpeg_seconds"] for c in clips), "qc": all(c["qc"]["passed"] for c in clips),
            "markets": len(docs)}


def report(title: str, m: dict, r: dict) -> None:
    print(f"\n== {title}")
    print(f"episode render (rerun with every other stage cached; made: {', '.join(r['made'])}): render stage "
          f"{r['render']:.1f} s wall; the run {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, {r['markets']} market(s); "
          f"load {r['load'][0]:.2f}")
    print(f"promo: {m['clips']} clip(s) for {m['markets']} market(s): wall {m['wall']:.1f} s, CPU {m['cpu']:.1f} s "
          f"(clip encodes {m['ffmpeg']:.1f} s wall); load {m['load'][0]:.2f} {m['load'][1]:.2f} {m['load'][2]:.2f}")
    clips = max(m["clips"], 1)
    print(f"per clip: wall {m['wall'] / clips:.1f} s = {100 * m['wall'] / clips / max(r['render'], 1e-6):.0f}% of the "
          f"render stage, CPU {m['cpu'] / clips:.1f} s = {100 * m['cpu'] / clips / max(r['cpu'], 1e-6):.0f}% of the "
          f"render run's CPU (goal <= 25%)")
    print(f"all {m['clips']} clips: {100 * m['cpu'] / max(r['cpu'], 1e-6):.0f}% of the render run's CPU; upstream "
          f"stages made again by the promo: {m['made'] or 'none'}; QC all passed: {m['qc']}")


def sample(out: Path, codes: list[str], length: float, count: int) -> None:
    from locpipe.cli.options import run_settings
    from locpipe.core.resources import Resources

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    episode = manifest["episodes"][0]["episode"]
    source = Path(next(e["source"] for e in manifest["episodes"] if e["episode"] == episode))
    args = argparse.Namespace(out=out, markets=",".join(codes), distributor="internal", work=None, asr="faster-whisper",
                              asr_model=None, no_ocr=False, bible=None, tm=None, ledger=None, log_level="WARNING",
                              log_format="text", windows_names=False, subtitle_band=None, config_dir=None)
    settings = run_settings(args)
    resources = Resources()
    r = render_cost(source, settings, resources)
    m = measure(source, settings, resources, length=length, count=count)
    report(f"{episode} (from {out})", m, r)


def generated(length: float, count: int, seconds: float) -> None:
    import fake_backends as fb
    import yaml
    from test_promo import MT_NAME, SCRIPT, PromoMT, make_episode

    from locpipe.backends.mt.base import MT
    from locpipe.config import DEFAULT_CONFIG_DIR, load_market
    from locpipe.core.pipeline import run_episode
    from locpipe.core.resources import Resources
    from locpipe.core.settings import RunSettings

    base = Path(tempfile.mkdtemp(prefix="promo-bench-"))
    try:
        # the test script's lines, one every 2.2 s, as often as the episode holds them
        script = [(1.0 + 2.2 * k, 2.6 + 2.2 * k, text, level) for k, (_, _, text, level) in
                  enumerate(SCRIPT * 10) if 2.6 + 2.2 * k < seconds - 1]
        ep = make_episode(base / "gen01.mp4", seconds=seconds, size="1080x1920", script=script)
        cfg = base / "configs"
        shutil.copytree(DEFAULT_CONFIG_DIR / "profiles", cfg / "profiles")
        (cfg / "markets").mkdir(parents=True)
        market = {"name": "bench", "language": "en", "render_profile": "app",
                  "dub": {"enabled": True, "voice": f"{fb.TTS_NAME}:{fb.VOICE}", "background": "duck"},
                  "translation": {"backends": [MT_NAME]}}
        (cfg / "markets" / "us-bench.yaml").write_text(yaml.safe_dump(market), encoding="utf-8")
        with fb.registered():
            MT.register(MT_NAME)(PromoMT)
            try:
                settings = RunSettings(out_dir=base / "out", work_dir=base / "work", config_dir=cfg,
                                       asr_backend=fb.ASR_NAME, markets=(load_market(cfg, "us-bench"),), ocr=False,
                                       speakers=False, ledger_path=base / "ledger.sqlite")
                resources = Resources()
                run_episode(ep, settings, resources=resources)
                r = render_cost(ep, settings, resources)
                m = measure(ep, settings, resources, length=length, count=count)
            finally:
                MT._factories.pop(MT_NAME, None)
        report(f"generated {seconds:g} s 1080x1920 episode (app export, social promos)", m, r)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def main() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, help="OUT of a finished `locpipe run` (its cache is reused)")
    p.add_argument("--markets", default="us", help="markets of that run to cut")
    p.add_argument("--length", type=float, default=15.0)
    p.add_argument("--count", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60.0, help="length of the generated episode")
    p.add_argument("--skip-generated", action="store_true")
    a = p.parse_args()
    if a.out:
        sample(a.out, a.markets.split(","), a.length, a.count)
    if not a.skip_generated:
        generated(a.length, a.count, a.seconds)


if __name__ == "__main__":
    main()
