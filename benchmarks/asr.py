"""Character error rate and real-time factor of the transcription stage, per backend and mode.

    .venv/bin/pip install -e '.[bench]'      # adds the Mandarin clips of pytest-audioeval
    .venv/bin/python benchmarks/asr.py

Material: the bundled sample episode(s) (reference script in samples/reference/) and the
Mandarin clips shipped in pytest-audioeval (synthetic speech with transcripts). Modes:
``asr`` (recognition only), ``ocr`` (burned-in subtitles read with the packaged PP-OCR models,
fused with recognition; the RTF includes OCR), ``sidecar`` (the script beside the video;
timing from VAD).
CER ignores punctuation and spaces; RTF = stage seconds / audio seconds on this machine.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

from locpipe.backends.asr.base import ASROptions, get_asr_backend
from locpipe.metrics import cer
from locpipe.stages import ingest
from locpipe.stages.transcribe import transcribe_audio

ROOT = Path(__file__).resolve().parent.parent


def episodes() -> list[tuple[str, Path, str]]:
    """(name, video, reference text) for every sample with a reference script."""
    out = []
    for script in sorted((ROOT / "samples" / "reference").glob("*.script.json")):
        data = json.loads(script.read_text(encoding="utf-8"))
        out.append((data["episode"], ROOT / "samples" / data["video"], "".join(l["text"] for l in data["lines"])))
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
             video=None) -> dict:
    started = time.perf_counter()
    onscreen = None
    if mode == "ocr":
        from locpipe.stages.source_subs import detect_source_subtitles

        onscreen = detect_source_subtitles(video)
    transcript = transcribe_audio(audio, backend, sidecar=sidecar, onscreen=onscreen)
    seconds = time.perf_counter() - started
    hyp = "".join(c.text for c in transcript.cues)
    return {"item": name, "mode": mode, "cer": cer(reference, hyp), "rtf": seconds / wav_seconds(audio),
            "dropped": len(transcript.dropped)}


def main() -> None:
    backend = get_asr_backend("faster-whisper", ASROptions())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, video, ref in episodes():
            folder = Path(tmp) / name
            folder.mkdir()
            info = ingest.probe_episode(video)
            audio = folder / ingest.extract_audio(info, folder).audio_16k
            rows.append(run_mode(backend, name, audio, ref, "asr", None))
            rows.append(run_mode(backend, name, audio, ref, "ocr", None, video=info))
            srt = ROOT / "samples" / "reference" / f"{name}.zh.srt"
            if srt.exists():
                rows.append(run_mode(backend, name, audio, ref, "sidecar", srt))
        for name, wav, ref in clips():
            local = Path(tmp) / f"{name}.wav"
            shutil.copy(wav, local)
            rows.append(run_mode(backend, f"audioeval/{name}", local, ref, "asr", None))
    print(f"backend: {backend.version}")
    print(f"{'item':24s} {'mode':8s} {'CER':>7s} {'RTF':>6s} {'dropped':>7s}")
    for r in rows:
        print(f"{r['item']:24s} {r['mode']:8s} {r['cer']:7.1%} {r['rtf']:6.3f} {r['dropped']:7d}")
    if not clips():
        print("(pytest-audioeval not installed: pip install -e '.[bench]' for the extra Mandarin clips)")


if __name__ == "__main__":
    main()
