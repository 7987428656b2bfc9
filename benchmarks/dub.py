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
"""

from __future__ import annotations

import argparse
import json
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


@dataclass
class Timing:
    """Synthesis calls of one backend: seconds spent, seconds of audio, the audio per line."""

    seconds: float = 0.0
    audio_seconds: float = 0.0
    lines: list[tuple[str, np.ndarray, int]] = field(default_factory=list)


def timed(backend, timing: Timing) -> None:
    """Wrap the backend instance's ``synthesize`` to record time and audio (benchmark only)."""
    original = backend.synthesize

    def synthesize(text: str, voice: str) -> np.ndarray:
        started = time.perf_counter()
        audio = original(text, voice)
        timing.seconds += time.perf_counter() - started
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
    lines = json.loads(SCRIPT.read_text(encoding="utf-8"))["lines"]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out" / "dub")
    parser.add_argument("--fresh", action="store_true", help="rerun the pipeline from scratch")
    parser.add_argument("--listen", action="store_true", help="transcribe the dubbed lines back with Whisper")
    args = parser.parse_args()

    manifest = run_pipeline(args.out, args.fresh)
    unit = next(u for u in manifest["units"] if u["market"] == "us")
    if unit["status"] != "ok":
        sys.exit(f"pipeline unit us failed: {unit['error']}")
    english = Translation.model_validate_json((artifact(args.out, unit, "translate") / "artifact.json").read_text())
    pipeline_dub = DubTrack.model_validate_json((artifact(args.out, unit, "synthesize") / "artifact.json").read_text())
    duration = next(ep["duration"] for ep in manifest["episodes"])
    source = SAMPLE_DIR / "ep001.mp4"

    cases = [
        ("piper en (pipeline translation)", "us", "en", english, None),
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


if __name__ == "__main__":
    main()
