"""Does naming who speaks help the local model? chrF++ with labels, names, names + gender.

    flock /tmp/locpipe-bench.lock env LOCPIPE_LOCAL_LLM_MEMO=off \\
        .venv/bin/python benchmarks/translate_speakers.py [--sets sample,reference] [--threads 2]

The pipeline's path (``translate_episode`` with the bible) on the reference sets of
``benchmarks/translate.py``, three ways:

* ``labels``: every line as ``[S1] text`` (what the pipeline gives the packaged model);
* ``names``: each speaker linked to a bible character from the scene's own dialogue, as the
  pipeline links them without a voices.yaml (``localize.characters.match_speakers``), and the
  prompt says ``Speakers: S1 = Lin Xiao`` above the ``[S1] text`` lines (``LOCPIPE_SPEAKER_NAMES=on``);
  unlinked speakers stay labels only;
* ``names+gender``: ``Speakers: S1 = Lin Xiao (female)``;
* ``hand``, ``hand+gender``: the same with the links a loc op would set in voices.yaml
  (``HAND_LINKS``, read off the references: 10 of the reference set's 24 speakers are bible
  characters; the dialogue alone links 4 of them).

The reference set's labels are per scene (S1 of one scene is not S1 of the next), so each
scene's labels are made unique (S1..Sn over the set) for all three configurations alike.
Prints one JSON row per configuration (chrF++, bible terms, seconds, CPU seconds, generated
tokens, load) and the links it used.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

from translate import DATA, RefLine, chrf, cpu_seconds, load_reference, term_accuracy, to_transcript  # noqa: E402

from locpipe.backends.mt.llama_local import LocalLLMBackend  # noqa: E402
from locpipe.localize import characters as chars  # noqa: E402
from locpipe.localize.bible import SeriesBible, load_bible  # noqa: E402
from locpipe.stages.translate import translate_episode  # noqa: E402

CONFIGS = ("labels", "names", "names+gender", "hand", "hand+gender")
#: per set, the unique labels (``unique_labels``) that are bible characters, from the references
HAND_LINKS = {
    "sample": {"S1": "林晓", "S2": "陆总"},
    "reference": {"S1": "苏晚", "S2": "顾总", "S3": "雪儿", "S4": "顾总", "S5": "苏晚", "S6": "沈念", "S7": "陈浩",
                  "S9": "沈念", "S10": "陈浩", "S19": "磊磊"},
}


def unique_labels(lines: list[RefLine]) -> list[RefLine]:
    """Per-scene labels made unique over the set, in order of first appearance."""
    seen: dict[tuple[str, str], str] = {}
    out = []
    for ln in lines:
        key = (ln.scene, ln.speaker)
        if key not in seen:
            seen[key] = f"S{len(seen) + 1}"
        out.append(RefLine(ln.scene, seen[key], ln.zh, ln.refs))
    return out


def scene_links(lines: list[RefLine], bible: SeriesBible) -> dict[str, str]:
    """Label -> character from each scene's dialogue (no pitch, no voices.yaml)."""
    facts = chars.facts_from_bible(bible)
    links: dict[str, str] = {}
    for scene in dict.fromkeys(ln.scene for ln in lines):
        mine = [chars.Line(i, ln.speaker, ln.zh) for i, ln in enumerate(lines) if ln.scene == scene]
        heard = {label: ("unknown", None) for label in dict.fromkeys(x.speaker for x in mine)}
        links.update({label: m.character for label, m in chars.match_speakers(mine, facts, heard).items()
                      if m.character})
    return links


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sets", default="sample,reference", help="comma list of sample, reference")
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma list of {', '.join(CONFIGS)}")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the cores free now)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "translate_speakers.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("LOCPIPE_LOCAL_LLM_TIMEOUT", "600")
    sets = {"sample": (load_reference(DATA / "sample_ep001_ref.json"),
                       load_bible(ROOT / "configs" / "series" / "samples.yaml")),
            "reference": (load_reference(DATA / "translate_ref.json"), load_bible(DATA / "translate_bible.yaml"))}
    backend = LocalLLMBackend()
    backend.configure_threads(args.threads)
    backend.check_available()
    rows, outputs = [], {}
    for set_name in args.sets.split(","):
        lines, bible = sets[set_name]
        lines = unique_labels(lines)
        links = scene_links(lines, bible)
        print(f"{set_name}: links {json.dumps(links, ensure_ascii=False)} "
              f"({len(links)} of {len({ln.speaker for ln in lines})} speakers)", flush=True)
        for config in args.configs.split(","):
            cpu, tokens, started = cpu_seconds(), backend.decode_stats.get("generated_tokens", 0), time.perf_counter()
            chosen = {"labels": None, "names": links, "hand": HAND_LINKS[set_name]}[config.split("+")[0]]
            translation = translate_episode(to_transcript(lines), "en", backend, bible=bible, speakers=chosen,
                                            speaker_genders=config.endswith("+gender"))
            texts = [c.text for c in translation.cues]
            found, expected = term_accuracy([ln.zh for ln in lines], texts, bible, "en")
            row = {"set": set_name, "config": config, "lines": len(lines),
                   "chrf++": chrf(texts, [ln.refs["en"] for ln in lines]), "terms": f"{found}/{expected}",
                   "seconds": round(time.perf_counter() - started, 1), "cpu_s": round(cpu_seconds() - cpu, 1),
                   "generated_tokens": backend.decode_stats.get("generated_tokens", 0) - tokens,
                   "load": round(os.getloadavg()[0], 2)}
            rows.append(row)
            outputs[f"{set_name}/{config}"] = texts
            print(json.dumps(row, ensure_ascii=False), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "outputs": outputs}, ensure_ascii=False, indent=1),
                        encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
