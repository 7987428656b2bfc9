"""Speed and memory of the local model on an episode-sized job (issue 18, item 5).

The first N lines of the reference set (several scenes, with its bible) go through the
pipeline's translate path with the answer memo off, so every line is generated. Prints wall
seconds, peak RSS and chrF++ as one JSON line, then the first translations to read.

    .venv/bin/python benchmarks/translate_speed.py [--lines 40] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
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
    args = ap.parse_args()
    ref = bench.load_reference(bench.DATA / "translate_ref.json")[: args.lines]
    bible = load_bible(bench.DATA / "translate_bible.yaml")
    started = time.perf_counter()
    backend = LocalLLMBackend()
    backend.configure_threads(args.threads)
    backend.check_available()
    texts = [c.text for c in translate_episode(bench.to_transcript(ref), "en", backend, bible=bible).cues]
    print(json.dumps({"lines": len(ref), "threads": args.threads, "wall_s": round(time.perf_counter() - started, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                      "chrf++": bench.chrf(texts, [ln.refs["en"] for ln in ref]),
                      "load": round(os.getloadavg()[0], 1)}))
    for line, text in list(zip(ref, texts))[:12]:
        print(f"{line.zh} -> {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
