"""Dub quality figures on the bundled sample: slot fit, TTS speed per backend, loudness.

    .venv/bin/python benchmarks/dub.py [--out benchmarks/out/dub] [--fresh] [--listen]

1. Runs ``locpipe run samples/ --markets us`` (English dub, the default path; reused from
   ``--out`` when already there unless ``--fresh``) and reads its artifacts: the English
   translation, the dub report and the final export.
2. Dubs each line set with each backend through the real synthesize stage: the pipeline's
   English translation with Piper, and hand translations of the sample's reference script
   (``samples/reference/ep001.script.json``, its real timings) in Japanese and Spanish with
   Kokoro and in Spanish with the espeak-ng fallback. Reports the share of spoken lines that
   fit their slot at <= the market cap (1.25x) without a shorter rewrite, and the TTS
   real-time factor (synthesis seconds / speech seconds, model load excluded).
3. Mixes each dub over the original audio with the real mix stage and measures the
   loudness error against the -14 LUFS target, plus the pipeline export's own figure.
4. ``--listen``: transcribes every synthesized line back with the packaged Whisper base model
   and prints the text and CER (an intelligibility check, not a quality score).

5. Separation (benchmarks/separation.py): speech SI-SDR of a synthetic mix of Piper speech over
   a generated band and over real film music, before and after the Spleeter 2-stem rebuild,
   and its real-time factor on the sample.
6. ``--voices`` (issue 13; ``--voices-only`` skips 1-5): per voice (Kokoro's native packs,
   Piper joe for comparison) the 13 hand-translated lines at the script's timings through the
   real synthesize stage: listen-check CER (Whisper base transcribing the dub back, text
   lower-cased without punctuation, digits as heard), wall RTF and CPU RTF (CPU seconds per
   speech second / 2 cores: what the 2 cores give when no one else is using them) and fit rate.
   Then the distinctness of an automatic cast of 6 characters (3 female, 3 male) under the
   new rules and under the old ones (Piper joe pitched): cosine similarity of the speaker
   encoder's (Resemblyzer) voice prints between cast voices and whether the speakers stage's
   clustering tells them apart; and the sample's own cast, old rules vs the pipeline's.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from separation import format_figures, separation_figures  # benchmarks/separation.py

from locpipe.artifacts import DubTrack, TranslatedCue, Translation
from locpipe.backends.tts.select import choose_voice
from locpipe.config import DEFAULT_CONFIG_DIR, DubConfig, load_market
from locpipe.media.ffmpeg import measure_loudness
from locpipe.media.probe import probe
from locpipe.metrics import cer
from locpipe.stages.mix import mix_audio
from locpipe.stages.synthesize import synthesize_dub

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "samples"
SCRIPT = SAMPLE_DIR / "reference" / "ep001.script.json"
MAX_STRETCH = 1.25
TARGET_LUFS = -14.0

#: hand translations of the 13 reference lines (same order), for languages with no offline MT
JAPANESE = [
    "陸社長、お呼びですか？", "林暁、この契約書にサインしたのは君か？", "はい、私です。何か問題でも？",
    "これのせいで会社は五百万の損失を出した。", "ありえません、全部確認しました！",
    "証拠はここにある。自分で見てみろ。",
    "このサインは私が書いたものじゃありません！", "では誰が？", "この書類に触ったのは姉だけです。", "君の姉？林薇か？",
    "陸社長、三日ください。", "いいだろう。三日後に真相を聞かせてもらう。", "必ず突き止めてみせます。",
]
SPANISH = [
    "Señor Lu, ¿me buscaba?", "Lin Xiao, ¿usted firmó este contrato?", "Sí, lo firmé yo. ¿Hay algún problema?",
    "La empresa perdió cinco millones por su culpa.", "¡Imposible, lo revisé todo!",
    "Aquí están las pruebas. Véalo usted misma.", "¡Esta firma no es mía!", "¿Entonces quién fue?",
    "Solo mi hermana tocó este documento.", "¿Su hermana? ¿Lin Wei?", "Señor Lu, deme tres días.",
    "Bien. En tres días, quiero la verdad.", "Le prometo que lo voy a aclarar.",
]


ENGLISH = [
    "Mr. Lu, you wanted to see me?", "Lin Xiao, did you sign this contract?", "Yes, I did. Is there a problem?",
    "The company lost five million because of it.", "Impossible, I checked everything!",
    "The proof is right here. See for yourself.", "This signature is not mine!", "Then who signed it?",
    "Only my sister touched this file.", "Your sister? Lin Wei?", "Mr. Lu, give me three days.",
    "Fine. In three days, I want the truth.", "I promise I will find out.",
]
PORTUGUESE = [
    "Senhor Lu, o senhor me chamou?", "Lin Xiao, você assinou este contrato?", "Sim, fui eu. Algum problema?",
    "A empresa perdeu cinco milhões por causa disso.", "Impossível, eu conferi tudo!",
    "A prova está aqui. Veja você mesma.", "Esta assinatura não é minha!", "Então quem foi?",
    "Só a minha irmã mexeu neste documento.", "Sua irmã? Lin Wei?", "Senhor Lu, me dê três dias.",
    "Está bem. Em três dias, quero a verdade.", "Eu prometo que vou descobrir.",
]
#: voices measured by --voices: (voice spec, language, lines)
VOICE_CASES = [
    *[(f"kokoro:{v}", "en", ENGLISH) for v in ("af_heart", "af_bella", "af_nicole", "am_michael", "am_fenrir",
                                                 "am_puck", "bf_emma", "bm_george")],
    ("piper:en_US-joe-medium", "en", ENGLISH),
    ("kokoro:ef_dora@es-419", "es-419", SPANISH), ("kokoro:em_alex@es-419", "es-419", SPANISH),
    ("kokoro:jf_alpha@es-419", "es-419", SPANISH),
    ("kokoro:pf_dora", "pt-BR", PORTUGUESE), ("kokoro:pm_alex", "pt-BR", PORTUGUESE),
]
#: six characters of an imagined series for the distinctness figure: (label, character, gender)
CAST = [("S1", "陆总", "male"), ("S2", "林晓", "female"), ("S3", "林薇", "female"), ("S4", "陈助理", "male"),
        ("S5", "王妈", "female"), ("S6", "赵律师", "male")]
CAST_LINES = ["Where were you last night?", "I checked every single page of that contract.",
              "Give me three days and I will find the truth."]


@dataclass
class Timing:
    """Synthesis calls of one backend: seconds spent (wall and CPU), seconds of audio, the audio per line."""

    seconds: float = 0.0
    cpu_seconds: float = 0.0
    audio_seconds: float = 0.0
    lines: list[tuple[str, np.ndarray, int]] = field(default_factory=list)


def timed(backend, timing: Timing) -> None:
    """Wrap the backend instance's ``synthesize`` to record time and audio (benchmark only)."""
    original = backend.synthesize

    def synthesize(text: str, voice: str, params=None) -> np.ndarray:
        started, cpu = time.perf_counter(), time.process_time()
        audio = original(text, voice, params) if params else original(text, voice)
        timing.seconds += time.perf_counter() - started
        timing.cpu_seconds += time.process_time() - cpu
        rate = backend.sample_rate(voice)
        timing.audio_seconds += audio.size / rate
        timing.lines.append((text, audio, rate))
        return audio

    backend.synthesize = synthesize


def run_pipeline(out: Path, fresh: bool) -> dict:
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("locpipe")
    started = time.perf_counter()
    subprocess.run([str(exe), "--log-level", "WARNING", "run", str(SAMPLE_DIR), "--out", str(out), "--markets", "us",
                    "--distributor", "bench"], check=True)
    print(f"pipeline (us market): {time.perf_counter() - started:.1f} s wall")
    return json.loads((out / "manifest.json").read_text())


def artifact(out: Path, unit: dict, stage: str) -> Path:
    key = next(s["key"] for s in unit["stages"] if s["stage"] == stage)
    return next((out / ".locpipe-work" / "episodes").glob(f"*/{stage}/{key}"))


def reference_translation(language: str, texts: list[str]) -> Translation:
    """The hand translation at the script's timings (the first ``len(texts)`` lines)."""
    lines = json.loads(SCRIPT.read_text(encoding="utf-8"))["lines"][:len(texts)]
    cues = [TranslatedCue(index=i, start=ln["start"], end=ln["end"], source_text=ln["text"], text=text)
            for i, (ln, text) in enumerate(zip(lines, texts, strict=True))]
    return Translation(language=language, backend="hand", cues=cues)


def fit_share(dub: DubTrack) -> tuple[float, int, int, float]:
    """(share fitting at <= cap, spoken lines, overflowing lines, largest stretch)."""
    spoken = [ln for ln in dub.lines if ln.outcome != "skipped"]
    fits = [ln for ln in spoken if ln.outcome in ("fit", "stretched") and ln.stretch <= MAX_STRETCH + 1e-6]
    return (len(fits) / len(spoken) if spoken else 0.0, len(spoken), len(spoken) - len(fits),
            max((ln.stretch for ln in spoken), default=1.0))


def listen(lines: list[tuple[str, np.ndarray, int]], language: str, model) -> list[tuple[str, str, float]]:
    """Each line transcribed back by Whisper: (said, heard, CER on lower-cased text)."""
    out = []
    for text, audio, rate in lines:
        n = int(round(audio.size * 16000 / rate))
        audio16 = np.interp(np.linspace(0, audio.size - 1, n), np.arange(audio.size), audio).astype(np.float32)
        segments, _ = model.transcribe(audio16, language=language, beam_size=5, vad_filter=False)
        heard = "".join(s.text for s in segments).strip()
        out.append((text, heard, cer(text.lower(), heard.lower())))
    return out


def _plain(text: str) -> str:
    """Lower case, letters/digits/spaces only: CER of what was said, not of punctuation."""
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def _number_words(text: str) -> str:
    return text.replace("5 million", "five million").replace("5 millones", "cinco millones").replace(
        "5 milhões", "cinco milhões").replace("3 days", "three days")


def _load_whisper():
    from faster_whisper import WhisperModel

    from locpipe.assets import whisper_base_dir

    return WhisperModel(str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=2)


def _cpu_seconds() -> float:
    """user+sys CPU seconds of this process (every thread) and its finished children (ffmpeg)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def voice_figures(whisper, duration: float, specs: list[str] | None = None, lines: int = 13,
                  threads: int | None = None) -> list[tuple]:
    """Per voice: (spec, quality, CER, wall RTF, CPU RTF on 2 cores, fit share, spoken, load s, heard).

    ``specs`` picks cases of VOICE_CASES (all by default); ``lines`` keeps the first N lines.
    """
    from locpipe.backends.tts.base import parse_voice_spec

    rows = []
    cases = [(spec, lang, texts[:lines]) for spec, lang, texts in VOICE_CASES if not specs or spec in specs]
    with tempfile.TemporaryDirectory(prefix="voice-bench-") as tmp:
        engines: dict[str, object] = {}
        for spec, language, texts in cases:
            backend_name = spec.partition(":")[0]
            if backend_name not in engines:
                engines[backend_name] = parse_voice_spec(spec)[0]
                engines[backend_name].configure_threads(threads)  # None: the engine's default (every core)
            backend = engines[backend_name]
            choice = choose_voice(language, spec, make=lambda name, b=backend: b if name == b.name else None)
            market = load_market(DEFAULT_CONFIG_DIR, "us")
            dub_cfg = DubConfig(enabled=True, voice=spec, max_stretch=MAX_STRETCH)
            market = market.model_copy(update={"config": market.config.model_copy(
                update={"dub": dub_cfg, "language": language})})
            started = time.perf_counter()
            backend.synthesize(texts[-1], choice.voice)  # load + warm up
            load = time.perf_counter() - started
            timing = Timing()
            original = backend.synthesize
            timed(backend, timing)
            folder = Path(tmp) / spec.replace(":", "_").replace("@", "_")
            folder.mkdir()
            # the whole stage (lines spoken ahead in parallel, fitting, rubberband), this process and its ffmpegs
            started, cpu = time.perf_counter(), _cpu_seconds()
            try:
                dub = synthesize_dub(reference_translation(language, texts), market, duration, folder, backend, choice)
            finally:
                backend.synthesize = original
            timing.seconds, timing.cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu
            heard = listen(timing.lines, language[:2], whisper) if whisper else []
            # against the written line: the voice was given respelled names ("Lin Shee-yow")
            heard = [(written, got, cer(_plain(written), _plain(_number_words(got))))
                     for written, (_, got, _) in zip(texts, heard, strict=False)]
            errors = [err for *_, err in heard]
            share, spoken, _, _ = fit_share(dub)
            rows.append((spec, dub.quality, float(np.mean(errors)) if errors else float("nan"),
                         timing.seconds / timing.audio_seconds, timing.cpu_seconds / timing.audio_seconds / 2,
                         share, spoken, load, heard))
            print(f"  {spec}: CER {rows[-1][2]:.3f}, RTF {rows[-1][3]:.2f} (CPU/2 {rows[-1][4]:.2f}), fit {share:.0%}",
                  flush=True)
    return rows


def cast_figures() -> list[tuple[str, list[str], float, float, float, int]]:
    """(rules, cast, max and mean cosine between different characters, clustering accuracy, clusters)."""
    from locpipe.backends.speaker import resemblyzer_encoder as enc
    from locpipe.localize.voices import VoiceMap, market_voices, resolve_casting, speak
    from locpipe.metrics import label_accuracy
    from locpipe.stages import speakers as sp

    kokoro = choose_voice("en", "kokoro:af_heart").backend
    vm = VoiceMap(speakers={label: char for label, char, _ in CAST})
    genders = {char: gender for _, char, gender in CAST}
    people = [(label, "unknown") for label, _, _ in CAST]
    new, _ = resolve_casting(vm, people, "us", market_voices(kokoro, "en", "af_heart"), {}, genders, piper=False)
    old, _ = resolve_casting(vm, people, "us", [("piper:en_US-joe-medium", "male")], {}, genders, piper=True)
    encoder = enc.load_encoder()
    out = []
    for rules, casting in (("old: Piper joe pitched", old), ("new: Kokoro packs by gender", new)):
        backends: dict = {}
        prints, truth = [], []
        for label, _, _ in CAST:
            for text in CAST_LINES:
                prints.append(encoder.embed_utterance(enc.preprocess(speak(casting[label], text, 16000, backends))))
                truth.append(label)
        emb = np.array(prints)
        means = np.array([emb[[i for i, t in enumerate(truth) if t == label]].mean(axis=0) for label, _, _ in CAST])
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        sims = means @ means.T
        off = sims[~np.eye(len(CAST), dtype=bool)]
        i, j = np.unravel_index(np.argmax(np.where(np.eye(len(CAST), dtype=bool), -1.0, sims)), sims.shape)
        ids = sp.agglomerate(emb, sp.SpeakerOptions().cluster_threshold)
        closest = f"most alike: {CAST[i][0]} and {CAST[j][0]} ({sims[i, j]:.2f})"
        out.append((f"{rules}; {closest}",
                    [f"{label} {char} ({gender}): {casting[label].describe()}" for label, char, gender in CAST],
                    float(off.max()), float(off.mean()), label_accuracy([f"c{i}" for i in ids], truth),
                    len(set(ids))))
    return out


def sample_cast(out: Path, unit: dict) -> tuple[list[str], list[str], dict]:
    """The sample's speakers cast by the old rules (Piper joe) and by this run; the dub's QC checks."""
    from locpipe.localize.voices import VoiceMap, resolve_casting

    dub = DubTrack.model_validate_json((artifact(out, unit, "synthesize") / "artifact.json").read_text())
    speakers = json.loads((SAMPLE_DIR / ".locpipe" / "speakers.json").read_text(encoding="utf-8"))
    people = [(label, entry.get("gender", "unknown"), entry.get("pitch_hz"))
              for label, entry in sorted(speakers.get("speakers", {}).items())]
    old, _ = resolve_casting(VoiceMap(), people, "us", [("piper:en_US-joe-medium", "male")], {}, {}, piper=True)
    qc = json.loads(Path(unit["outputs"]["qc"]).read_text()) if unit["outputs"].get("qc") else {}
    checks = {c["name"]: c for c in qc.get("checks", []) if c["name"].startswith("dub")}
    return ([f"{k}: {v.describe()}" for k, v in old.items()], [f"{k}: {v}" for k, v in sorted(dub.voices.items())],
            checks)


def print_voice_figures(rows: list[tuple], casts: list[tuple]) -> None:
    load = open("/proc/loadavg").read().split()[0] if Path("/proc/loadavg").exists() else "?"
    spoken = rows[0][6] if rows else 0
    print(f"\n## Voices (issue 13): {spoken} hand-translated lines each at the sample's timings (load average {load} "
          "on 2 cores)\n")
    print("| voice | quality | listen-check CER | wall RTF | CPU RTF / 2 cores | lines fitting <= 1.25x | load s |")
    print("|---|---|---|---|---|---|---|")
    for spec, quality, err, rtf, cpu_rtf, share, spoken, load_s, _ in rows:
        print(f"| `{spec}` | {quality} | {err:.3f} | {rtf:.2f} | {cpu_rtf:.2f} | {share:.0%} of {spoken} | "
              f"{load_s:.1f} |")
    for rules, cast, top, mean, acc, clusters in casts:
        print(f"\n### automatic cast of {len(CAST)} characters, {rules}: speaker-encoder cosine between characters "
              f"max {top:.2f}, mean {mean:.2f}; clustering (threshold 0.58) finds {clusters} speakers, "
              f"label accuracy {acc:.0%}")
        for line in cast:
            print(f"- {line}")
    for spec, *_, heard in rows:
        worst = sorted(heard, key=lambda h: -h[2])[:2]
        print(f"\n{spec} worst lines: " + "; ".join(f"{said!r} -> {got!r}" for said, got, _ in worst))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "dub")
    parser.add_argument("--fresh", action="store_true", help="rerun the pipeline from scratch")
    parser.add_argument("--listen", action="store_true", help="transcribe the dubbed lines back with Whisper")
    parser.add_argument("--voices", action="store_true", help="per-voice CER/RTF/fit and cast distinctness")
    parser.add_argument("--voices-only", action="store_true", help="only the --voices figures")
    parser.add_argument("--voice", action="append", default=[], help="--voices: only this voice spec (repeatable)")
    parser.add_argument("--lines", type=int, default=13, help="--voices: the first N script lines per voice")
    parser.add_argument("--threads", type=int, help="--voices: cores the TTS engine may use (default: all; 1 = "
                                                      "one line at a time, the speed before issue 13's fix)")
    parser.add_argument("--no-cast", action="store_true", help="--voices: skip the cast distinctness figures")
    args = parser.parse_args()

    if args.voices or args.voices_only:
        duration = json.loads(SCRIPT.read_text(encoding="utf-8"))["duration"]
        voice_rows = voice_figures(_load_whisper(), duration, args.voice, args.lines, args.threads)
        print_voice_figures(voice_rows, [] if args.no_cast else cast_figures())
        if args.voices_only:
            return
    manifest = run_pipeline(args.out, args.fresh)
    unit = next(u for u in manifest["units"] if u["market"] == "us")
    if unit["status"] != "ok":
        sys.exit(f"pipeline unit us failed: {unit['error']}")
    english = Translation.model_validate_json((artifact(args.out, unit, "translate") / "artifact.json").read_text())
    pipeline_dub = DubTrack.model_validate_json((artifact(args.out, unit, "synthesize") / "artifact.json").read_text())
    duration = next(ep["duration"] for ep in manifest["episodes"])
    source = SAMPLE_DIR / "ep001.mp4"

    cases = [
        (f"{pipeline_dub.backend} en (pipeline translation)", "us", "en", english, None),
        ("kokoro ja (hand translation)", "jp", "ja", reference_translation("ja", JAPANESE), None),
        ("kokoro es (hand translation)", "mx", "es-419", reference_translation("es-419", SPANISH), None),
        ("espeak-ng es (hand translation)", "mx", "es-419", reference_translation("es-419", SPANISH), "espeak-ng"),
    ]
    rows = []
    heard: dict[str, list[tuple[str, str, float]]] = {}
    whisper = None
    if args.listen:
        from faster_whisper import WhisperModel

        from locpipe.assets import whisper_base_dir

        whisper = WhisperModel(str(whisper_base_dir()), device="cpu", compute_type="int8", cpu_threads=2)
    with tempfile.TemporaryDirectory(prefix="dub-bench-") as tmp:
        for label, code, language, translation, backend_name in cases:
            base = load_market(DEFAULT_CONFIG_DIR, code)
            dub_cfg = DubConfig(enabled=True, backend=[backend_name] if backend_name else base.config.dub.backend,
                                voice=base.config.dub.voice, max_stretch=MAX_STRETCH)
            market = base.model_copy(update={"config": base.config.model_copy(update={"dub": dub_cfg})})
            choice = choose_voice(language, dub_cfg.voice, dub_cfg.backend)
            backend = choice.backend
            started = time.perf_counter()
            backend.synthesize({"ja": "はい。", "en": "Yes."}.get(language[:2], "Sí."), choice.voice)  # load + warm up
            load = time.perf_counter() - started
            timing = Timing()
            timed(backend, timing)
            folder = Path(tmp) / label.split(" (")[0].replace(" ", "-")
            folder.mkdir()
            dub = synthesize_dub(translation, market, duration, folder, backend, choice)
            mixed = mix_audio(probe(source, require_audio=False), dub, folder, market, duration, folder)
            loud = measure_loudness(folder / mixed.wav)
            share, spoken, overflow, top = fit_share(dub)
            rows.append((label, choice.spec, dub.quality, share, spoken, overflow, top,
                         timing.seconds / timing.audio_seconds if timing.audio_seconds else float("nan"), load,
                         loud.integrated - TARGET_LUFS, loud.true_peak))
            if whisper is not None:
                heard[label] = listen(timing.lines, language[:2], whisper)

    export = Path(unit["outputs"]["video"])
    export_loud = measure_loudness(export)
    p_share, p_spoken, p_overflow, p_top = fit_share(pipeline_dub)

    print(f"\n## Dub benchmark on {source.name} ({duration:.1f} s, 13 lines), cap {MAX_STRETCH}x, "
          f"target {TARGET_LUFS:g} LUFS\n")
    print("| dub | voice | quality | lines fitting <= 1.25x without rewrite | max stretch | TTS RTF | "
          "model load s | mix loudness error LU | mix true peak dBTP |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, spec, quality, share, spoken, overflow, top, rtf, load, err, tp in rows:
        print(f"| {label} | `{spec}` | {quality} | {share:.0%} ({spoken - overflow}/{spoken}) | {top:.2f}x | "
              f"{rtf:.3f} | {load:.1f} | {err:+.2f} | {tp:.2f} |")
    print(f"\npipeline export (us, {pipeline_dub.backend}:{pipeline_dub.voice}): lines fitting {p_share:.0%} "
          f"({p_spoken - p_overflow}/{p_spoken}, max {p_top:.2f}x); loudness {export_loud.integrated:.2f} LUFS "
          f"(error {export_loud.integrated - TARGET_LUFS:+.2f} LU), true peak {export_loud.true_peak:.2f} dBTP")
    print()
    print(format_figures(separation_figures()))
    for label, lines in heard.items():
        print(f"\n### heard back by Whisper base: {label} (mean CER {np.mean([c for *_, c in lines]):.2f})")
        for said, got, err in lines:
            print(f"- {said} -> {got} (CER {err:.2f})")
    if args.voices:
        before, after, checks = sample_cast(args.out, unit)
        print("\n### the sample's cast (us): old rules -> this run")
        print(f"- before (Piper joe pitched): {'; '.join(before)}")
        print(f"- after: {'; '.join(after)}")
        for name, check in checks.items():
            verdict = "pass" if check["passed"] else "FAIL"
            print(f"- QC {name}: {verdict} {check.get('value')} {check.get('detail', '')}")


if __name__ == "__main__":
    main()
