"""Translation quality: chrF++ per backend and language, and bible name/term accuracy.

    .venv/bin/python benchmarks/translate.py                 # everything (real model; ~30-60 min on 2 busy cores)
    .venv/bin/python benchmarks/translate.py --only en       # English configurations only
    .venv/bin/python benchmarks/translate.py --only sample   # the sample episode, whisper-translate included

Data: ``benchmarks/data/translate_ref.json`` (64 lines of micro-drama dialogue in four genres,
two English references each, 20 lines with Spanish and Portuguese references) with its bible
``translate_bible.yaml``, and ``sample_ep001_ref.json`` (the sample episode's 13 lines, two
English references each). Configurations:

* ``local-bare``: the local model, a scene per request, no bible, no speakers;
* ``local-bible``: the pipeline's path (``translate_episode``): bible, speakers, neighbours, post-edit;
* for es/pt: the routes ``direct``, ``via-en`` and ``via-en+apertium`` (what ``ROUTES`` is chosen by);
* on the sample only: ``whisper-translate`` (it translates the speech, and the reference set has
  no audio; the sample has both).

Answers are memoized per machine (``LOCPIPE_LOCAL_LLM_MEMO``), so a rerun after changing one
configuration only pays for that one. Prints a table and writes ``benchmarks/out/translate.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from locpipe.artifacts import Cue, Transcript  # noqa: E402
from locpipe.backends.mt.base import TranslationRequest  # noqa: E402
from locpipe.backends.mt.llama_local import LocalLLMBackend, LocalSettings  # noqa: E402
from locpipe.localize.bible import SeriesBible, load_bible  # noqa: E402
from locpipe.localize.terms import term_table  # noqa: E402
from locpipe.stages.translate import translate_episode  # noqa: E402

DATA = ROOT / "benchmarks" / "data"
OUT = ROOT / "benchmarks" / "out" / "translate.json"
#: seconds between scenes, so the backend's scene splitter (a gap > 6 s) sees each scene alone
SCENE_GAP = 10.0


@dataclass(frozen=True)
class RefLine:
    scene: str
    speaker: str
    zh: str
    refs: dict[str, list[str]]


def load_reference(path: Path) -> list[RefLine]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for scene in doc["scenes"]:
        for line in scene["lines"]:
            refs = {"en": list(line["en"])}
            refs.update({lang: [line[lang]] for lang in ("es", "pt") if lang in line})
            out.append(RefLine(scene["id"], line.get("speaker", ""), line["zh"], refs))
    return out


def to_transcript(lines: list[RefLine], speakers: bool = True) -> Transcript:
    """The lines as a transcript: 2 s a line, a long pause between scenes."""
    cues, t, previous = [], 0.0, None
    for i, line in enumerate(lines):
        if previous is not None and line.scene != previous:
            t += SCENE_GAP
        cues.append(Cue(index=i, start=t, end=t + 2.0, text=line.zh, speaker=line.speaker if speakers else None))
        t, previous = t + 2.5, line.scene
    return Transcript(language="zh", cues=cues, backend="reference", model="benchmark")


def chrf(hyps: list[str], refs: list[list[str]]) -> float:
    """Corpus chrF++ (sacrebleu: char 6-grams + word 2-grams), several references per line."""
    from sacrebleu.metrics import CHRF

    streams = [[r[k] if k < len(r) else r[0] for r in refs] for k in range(max(len(r) for r in refs))]
    return round(CHRF(word_order=2).corpus_score(hyps, streams).score, 1)


def term_accuracy(sources: list[str], hyps: list[str], bible: SeriesBible | None, language: str
                  ) -> tuple[int, int]:
    """(found, expected): bible renderings (names, glossary, fixed honorifics) present in the output."""
    if bible is None:
        return 0, 0
    table = term_table(bible, language, sources)
    found = expected = 0
    for src, hyp in zip(sources, hyps, strict=True):
        for entry in table:
            if entry.kind == "honorific" and not entry.protect and "{" in entry.target:
                continue
            if any(f in src for f in entry.forms) and not _shadowed(entry, src, table):
                expected += 1
                found += entry.target.lower() in hyp.lower()
    return found, expected


def _shadowed(entry, src: str, table) -> bool:
    """A form inside a longer matched form (廷深 in 顾廷深) is not counted twice."""
    return any(e is not entry and any(f in o and f != o and o in src for f in entry.forms for o in e.forms)
               for e in table)


def run_local(lines: list[RefLine], language: str, *, bible: SeriesBible | None, route: str | None,
              backend: LocalLLMBackend) -> tuple[list[str], float]:
    """One configuration: with a bible the pipeline's translate_episode, without it the bare backend."""
    started = time.perf_counter()
    if route is not None:
        backend.local = LocalSettings(**{**backend.local.__dict__, "routes": ((language, route),)})
    if bible is None:
        transcript = to_transcript(lines, speakers=False)
        texts = backend.translate(TranslationRequest(cues=transcript.cues, source_lang="zh", target_lang=language,
                                                     context={}))
    else:
        translation = translate_episode(to_transcript(lines), language, backend, bible=bible)
        texts = [c.text for c in translation.cues]
    return texts, time.perf_counter() - started


def whisper_on_sample(lines: list[RefLine]) -> list[str]:
    """whisper-translate on the sample's audio, aligned to the sample's script cues."""
    import imageio_ffmpeg

    from locpipe.backends.mt.whisper_translate import WhisperTranslate

    script = json.loads((ROOT / "samples" / "reference" / "ep001.script.json").read_text(encoding="utf-8"))
    wav = ROOT / "benchmarks" / "out" / "ep001.16k.wav"
    wav.parent.mkdir(parents=True, exist_ok=True)
    video = ROOT / "samples" / "ep001.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-i", str(video), "-ac", "1",
                    "-ar", "16000", str(wav)], check=True)
    cues = [Cue(index=i, start=ln["start"], end=ln["end"], text=ln["text"]) for i, ln in enumerate(script["lines"])]
    return WhisperTranslate().translate(TranslationRequest(cues=cues, source_lang="zh", target_lang="en",
                                                           audio_16k=wav))


def cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", choices=["en", "es-pt", "sample"], action="append",
                    help="run only these parts (repeatable); default: all")
    ap.add_argument("--threads", type=int, default=None, help="llama.cpp threads (default: the cores free now)")
    ap.add_argument("--languages", default="es,pt", help="es-pt part: which of es,pt (default both)")
    ap.add_argument("--no-bare", action="store_true",
                    help="skip the local-bare rows (their prompt does not depend on the bible or context work)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default {OUT.relative_to(ROOT)})")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("LOCPIPE_LOCAL_LLM_TIMEOUT", "600")  # seconds a line: a busy machine is slow, not hung
    parts = set(args.only or ["sample", "en", "es-pt"])
    bible = load_bible(DATA / "translate_bible.yaml")
    sample_bible = load_bible(ROOT / "configs" / "series" / "samples.yaml")
    ref = load_reference(DATA / "translate_ref.json")
    sample = load_reference(DATA / "sample_ep001_ref.json")
    backend = LocalLLMBackend()
    backend.configure_threads(args.threads)
    backend.check_available()
    rows: list[dict] = []
    outputs: dict[str, list[str]] = {}
    cpu_mark, tokens_mark = [cpu_seconds()], [0]  # per row: CPU seconds and tokens generated since the last
    local_configs = ("local-bible",) if args.no_bare else ("local-bare", "local-bible")

    def record(set_name: str, config: str, language: str, lines: list[RefLine], texts: list[str], seconds: float,
               b: SeriesBible | None) -> None:
        found, expected = term_accuracy([ln.zh for ln in lines], texts, b, language)
        row = {"set": set_name, "config": config, "language": language, "lines": len(lines),
               "chrf++": chrf(texts, [ln.refs[language] for ln in lines]),
               "terms": f"{found}/{expected}" if expected else "-", "seconds": round(seconds, 1),
               "cpu_s": round(cpu_seconds() - cpu_mark[0], 1), "load": round(os.getloadavg()[0], 1),
               "generated_tokens": backend.decode_stats.get("generated_tokens", 0) - tokens_mark[0]}
        cpu_mark[0], tokens_mark[0] = cpu_seconds(), backend.decode_stats.get("generated_tokens", 0)
        rows.append(row)
        outputs[f"{set_name}/{config}/{language}"] = texts
        print(json.dumps(row, ensure_ascii=False), flush=True)

    if "sample" in parts:
        started = time.perf_counter()
        record("sample", "whisper-translate", "en", sample, whisper_on_sample(sample), time.perf_counter() - started,
               sample_bible)
        for config in local_configs:
            b = sample_bible if config == "local-bible" else None
            texts, secs = run_local(sample, "en", bible=b, route=None, backend=backend)
            record("sample", config, "en", sample, texts, secs, sample_bible)
    if "en" in parts:
        for config in local_configs:
            b = bible if config == "local-bible" else None
            texts, secs = run_local(ref, "en", bible=b, route=None, backend=backend)
            record("reference", config, "en", ref, texts, secs, bible)
    if "es-pt" in parts:
        subset = [ln for ln in ref if "es" in ln.refs]
        for language in [x for x in args.languages.split(",") if x in ("es", "pt")]:
            for route in ("via-en", "via-en+apertium", "direct"):  # the first two share the English step
                try:
                    texts, secs = run_local(subset, language, bible=bible, route=route, backend=backend)
                except Exception as exc:  # apertium missing: say so, keep the other routes
                    print(f"{language} {route}: skipped ({exc})", flush=True)
                    continue
                record("reference-20", f"local-bible {route}", language, subset, texts, secs, bible)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\n{'set':14} {'config':32} {'lang':4} {'lines':>5} {'chrF++':>7} {'terms':>7} {'s':>7} {'load':>5}")
    for r in rows:
        print(f"{r['set']:14} {r['config']:32} {r['language']:4} {r['lines']:5} {r['chrf++']:7} {r['terms']:>7} "
              f"{r['seconds']:7} {r['load']:5}")
    print(f"peak RSS {peak:.0f} MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "peak_rss_mb": round(peak), "outputs": outputs}, ensure_ascii=False,
                              indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
