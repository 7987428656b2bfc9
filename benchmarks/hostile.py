"""Hostile-input figures (issue 17): the line splitter, text cleaning and the ingest check.

    .venv/bin/python benchmarks/hostile.py          # about 30 s (the old splitter only on short lines)

Prints, for lines of 1,000 to 20,000 characters (English words and Chinese characters):
the splitter's work counter (candidate chunks measured) per token and its wall time, the
earlier cubic splitter's time where it finishes in reasonable time (``git show
df10536:locpipe/stages/segment.py``), the time to clean a 1 MB backend answer, and the time
``probe`` takes on a 30 s clip (content hash + packet scan + tail decode) against the same
clip cut in half. Writes ``benchmarks/out/hostile.json``.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from locpipe.errors import InputError  # noqa: E402
from locpipe.localize.sanitize import clean_for_language  # noqa: E402
from locpipe.media.ffmpeg import ffmpeg_exe  # noqa: E402
from locpipe.media.probe import probe  # noqa: E402
from locpipe.stages import segment  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "hostile.json"
OLD_COMMIT = "df10536"
UNITS = {"en": "the boss said that we would never see him again, and so it was; ", "zh": "我们今天去看电影，好吗？"}
SIZES = (1_000, 2_500, 5_000, 10_000, 20_000)
#: the old splitter is cubic: past these lengths it runs for minutes (zh: 600 characters took 329 s here)
OLD_CHARS = {"en": 600, "zh": 200}


def _old_segment():
    """The splitter before issue 17, from git (None outside a checkout)."""
    try:
        source = subprocess.run(["git", "-C", str(ROOT), "show", f"{OLD_COMMIT}:locpipe/stages/segment.py"],
                                capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "segment_old.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("segment_old", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["segment_old"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def splitter_rows(old) -> list[dict]:
    rows = []
    for language, unit in UNITS.items():
        rules = segment.rules_for(language)
        for size in SIZES:
            text = (unit * (size // len(unit) + 1))[:size].strip()
            tokens = segment._tokens(text, rules.spaced)
            n = segment.fewest_chunks(tokens, rules, language)
            work = segment.SplitWork()
            started = time.perf_counter()
            segment.split_balanced(text, n, rules, language, work)
            split_s = time.perf_counter() - started
            started = time.perf_counter()
            events = segment.segment_cue(text, 0.0, 3.0, 3.0, rules, language, 0)
            cue_s = time.perf_counter() - started
            row = {"language": language, "chars": size, "tokens": len(tokens), "chunks": n, "steps": work.steps,
                   "steps_per_token": round(work.steps / len(tokens), 1), "split_s": round(split_s, 4),
                   "segment_cue_s": round(cue_s, 4), "events": len(events)}
            rows.append(row)
        if old is not None:
            size = OLD_CHARS[language]
            text = (unit * (size // len(unit) + 1))[:size].strip()
            started = time.perf_counter()
            old.segment_cue(text, 0.0, 3.0, 3.0, old.rules_for(language), language, 0)
            old_s = time.perf_counter() - started
            started = time.perf_counter()
            segment.segment_cue(text, 0.0, 3.0, 3.0, rules, language, 0)
            rows.append({"language": language, "chars": size, "old_segment_cue_s": round(old_s, 3),
                         "new_segment_cue_s": round(time.perf_counter() - started, 4)})
    return rows


def cleaning_row() -> dict:
    started = time.perf_counter()
    result = clean_for_language("é" * 1_000_000, 3.0, "en")
    return {"clean_1mb_s": round(time.perf_counter() - started, 4), "result": result.problem}


def probe_rows() -> list[dict]:
    d = Path(tempfile.mkdtemp())
    full = d / "clip.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=30:duration=30",
                    "-f", "lavfi", "-i", "sine=frequency=330:sample_rate=48000:duration=30", "-c:v", "libx264",
                    "-preset", "ultrafast", "-c:a", "aac", "-shortest", "-movflags", "+faststart", str(full)],
                   check=True)
    cut = d / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    rows = []
    for path in (full, cut):
        started = time.perf_counter()
        try:
            probe(path)
            outcome = "ok"
        except InputError as exc:
            outcome = str(exc).split(": ", 1)[1]
        seconds = round(time.perf_counter() - started, 3)
        rows.append({"file": path.name, "bytes": path.stat().st_size, "probe_s": seconds, "outcome": outcome})
    return rows


def main() -> None:
    old = _old_segment()
    result = {"splitter": splitter_rows(old), "cleaning": cleaning_row(), "probe": probe_rows()}
    for row in result["splitter"]:
        print(row)
    print(result["cleaning"])
    for row in result["probe"]:
        print(row)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    print(f"written {OUT}")


if __name__ == "__main__":
    main()
