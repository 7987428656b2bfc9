"""Speed and memory of the local model on an episode-sized job (issue 18, item 5).

The first N lines of the reference set (several scenes of five series, with their bible: the
longest prompt an episode could have), or with ``--set episode40`` one series' 40-line episode
and its own bible, go through the pipeline's translate path with the answer memo off, so every
line is generated. Prints one JSON line: wall and CPU seconds, load average, peak RSS, chrF++, and where the time went
(requests, prompt tokens evaluated vs reused from the KV cache, generated tokens, tokens/s of
each); then the translations to read. Run it under the bench lock on a shared machine:

    flock /tmp/locpipe-bench.lock .venv/bin/python benchmarks/translate_speed.py [--lines 40] [--episodes 2]

``--requests`` also logs one row per request as it ends (tokens and seconds). The system
prompts' KV states go to a fresh folder unless ``--prefix-cache DIR`` names one: the default is
a machine that has never translated; run twice with the same folder for a worker that has
(``--first 24`` for another episode's lines, whose bible entries differ).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ["LOCPIPE_LOCAL_LLM_MEMO"] = "off"
HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import translate as bench  # noqa: E402

from locpipe.backends.mt.llama_local import LocalLLMBackend  # noqa: E402
from locpipe.localize.bible import load_bible  # noqa: E402
from locpipe.stages.translate import translate_episode  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--requests", action="store_true", help="print one row per request")
    ap.add_argument("--episodes", type=int, default=1,
                    help="translate N episodes in one process (the later ones: reference lines 24 on, 48 on, ...)")
    ap.add_argument("--first", type=int, default=0, help="start at this reference line (another episode)")
    ap.add_argument("--set", choices=["reference", "episode40"], default="reference",
                    help="reference: lines of the reference set (five series in one bible: the longest prompt); "
                         "episode40: one series' 40-line episode with its own bible")
    ap.add_argument("--prefix-cache", default="", help="folder of saved system-prompt KV states (default: a fresh one)")
    args = ap.parse_args()
    os.environ["LOCPIPE_LOCAL_LLM_PREFIX_CACHE"] = args.prefix_cache or tempfile.mkdtemp(prefix="locpipe-kv-")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.requests:
        logging.getLogger("locpipe.backends.mt.llama_decode").setLevel(logging.DEBUG)
    data, bible_file = {"reference": ("translate_ref.json", "translate_bible.yaml"),
                        "episode40": ("episode40.json", "episode40_bible.yaml")}[args.set]
    ref = bench.load_reference(bench.DATA / data)[args.first:args.first + args.lines]
    bible = load_bible(bench.DATA / bible_file)
    load_before = os.getloadavg()[0]
    started, cpu0 = time.perf_counter(), bench.cpu_seconds()
    backend = LocalLLMBackend()
    backend.configure_threads(args.threads)
    backend.check_available()
    loaded = time.perf_counter() - started
    texts = [c.text for c in translate_episode(bench.to_transcript(ref), "en", backend, bible=bible).cues]
    stats = backend.decode_stats
    wall, cpu = time.perf_counter() - started, bench.cpu_seconds() - cpu0
    later = []  # further episodes in the same worker: the model loaded, the rules' KV cached
    everything = bench.load_reference(bench.DATA / data)
    for k in range(1, args.episodes):
        first = (k * 24) % max(1, len(everything) - args.lines + 1)
        lines = everything[first:first + args.lines]
        t0, c0 = time.perf_counter(), bench.cpu_seconds()
        got = [c.text for c in translate_episode(bench.to_transcript(lines), "en", backend, bible=bible).cues]
        later.append({"episode": k + 1, "lines": f"{first}-{first + len(lines) - 1}",
                      "wall_s": round(time.perf_counter() - t0, 1), "cpu_s": round(bench.cpu_seconds() - c0, 1),
                      "chrf++": bench.chrf(got, [ln.refs["en"] for ln in lines])})
    print(json.dumps({"set": args.set, "lines": len(ref), "threads": backend._loaded().n_threads,
                      "layout": backend.local.layout,
                      "wall_s": round(wall, 1), "load_model_s": round(loaded, 1),
                      "cpu_s": round(cpu, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "chrf++": bench.chrf(texts, [ln.refs["en"] for ln in ref]),
                      "loadavg_before": round(load_before, 2), "loadavg_after": round(os.getloadavg()[0], 2),
                      **stats}))
    for row in later:
        print(json.dumps(row))
    for line, text in zip(ref, texts):
        print(f"{line.zh} -> {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
