"""Speaker labels: clustering accuracy and embedding cost of the speakers stage.

    .venv/bin/python benchmarks/speakers.py

Material:
* ``ep001``: the bundled sample's 13 script lines (two speakers, music under the dialogue;
  speaker A is the same TTS voice pitched down, the hardest case for a voice print);
* ``ep001 split``: the same lines as two episodes (lines 1-7, then 8-13 opening with the
  other speaker) labelled against one series store: are the labels the same across episodes;
* ``piper auto voices``: four speakers cast automatically (locpipe.localize.voices) from the one
  packaged Piper voice, four lines each: does the speaker model hear four people.

Accuracy = share of cues with the right label under the best renaming of labels.
Embedding time = seconds spent embedding per minute of embedded audio, warm model, this
machine (2 cores, shared).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np

from locpipe.artifacts import Cue, Transcript
from locpipe.backends.speaker import resemblyzer_encoder as enc
from locpipe.localize.voices import VoiceMap, resolve_casting, speak
from locpipe.media.audio import read_wav_16k
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.metrics import label_accuracy
from locpipe.stages import speakers as sp

ROOT = Path(__file__).resolve().parent.parent
LINES = ["Where were you last night?", "I checked every single page of that contract.",
         "Give me three days and I will find the truth.", "Nobody leaves this room until I say so."]


def write_wav(path: Path, audio: np.ndarray) -> Path:
    import wave

    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return path


def episode(audio: np.ndarray, lines: list[dict], path: Path) -> tuple[Transcript, Path]:
    parts, cues, t = [], [], 0.0
    for i, line in enumerate(lines):
        seg = audio[int(line["start"] * 16000):int(line["end"] * 16000)]
        parts += [seg, np.zeros(8000, dtype=np.float32)]
        cues.append(Cue(index=i, start=t, end=t + seg.size / 16000, text=line["text"]))
        t += seg.size / 16000 + 0.5
    return Transcript(cues=cues, backend="bench", model="bench"), write_wav(path, np.concatenate(parts))


def main() -> None:
    t0 = time.perf_counter()
    encoder = enc.load_encoder()
    load = time.perf_counter() - t0
    script = json.loads((ROOT / "samples/reference/ep001.script.json").read_text(encoding="utf-8"))["lines"]
    rows: list[tuple[str, int, int, float, str]] = []
    embed_seconds = audio_seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "ep001.wav"
        run_ffmpeg(["-i", str(ROOT / "samples/ep001.mp4"), "-vn", "-ac", "1", "-ar", "16000", str(wav)])
        audio = read_wav_16k(wav)
        # warm-up (first call compiles librosa's numba kernels)
        t = time.perf_counter()
        enc.embed_segments(encoder, audio, [(script[0]["start"], script[0]["end"])])
        first_call = time.perf_counter() - t

        tr = Transcript(cues=[Cue(index=i, start=x["start"], end=x["end"], text=x["text"])
                              for i, x in enumerate(script)], backend="bench", model="bench")
        t = time.perf_counter()
        labels = sp.label_speakers(tr, wav, None, "ep001", encoder=encoder)
        embed_seconds += time.perf_counter() - t
        audio_seconds += sum(x["end"] - x["start"] for x in script)
        truth = [x["speaker"] for x in script]
        rows.append(("ep001 (2 speakers, music)", len(truth), len(labels.speakers),
                     label_accuracy([c.speaker for c in labels.cues], truth), ""))

        store = Path(tmp) / "state" / sp.STORE_FILE
        tr1, w1 = episode(audio, script[:7], Path(tmp) / "e1.wav")
        tr2, w2 = episode(audio, script[7:], Path(tmp) / "e2.wav")
        first = sp.label_speakers(tr1, w1, store, "e1", encoder=encoder)
        second = sp.label_speakers(tr2, w2, store, "e2", encoder=encoder)
        predicted = [c.speaker for c in first.cues + second.cues]
        consistent = all(dict(zip(truth, predicted)).get(s) == p for s, p in zip(truth, predicted))
        rows.append(("ep001 split in 2 episodes, one store", len(truth), len(sp.load_store(store).speakers),
                     sum(p == {"B": "S1", "A": "S2"}[s] for s, p in zip(truth, predicted)) / len(truth),
                     f"labels same across episodes: {consistent}; match sims "
                     f"{[s.matched for s in second.speakers]}"))

        genders = [("S1", "male"), ("S2", "female"), ("S3", "male"), ("S4", "female")]
        casting, _ = resolve_casting(VoiceMap(), genders, "us", [("piper:en_US-joe-medium", "male")], {}, {},
                                     piper=True)
        backends: dict = {}
        clips: dict[str, list[np.ndarray]] = {}
        for label, _ in genders:
            clips[label] = [speak(casting[label], text, 16000, backends) for text in LINES]
        t = time.perf_counter()
        prints = {label: [encoder.embed_utterance(enc.preprocess(c)) for c in cs] for label, cs in clips.items()}
        embed_seconds += time.perf_counter() - t
        audio_seconds += sum(c.size for cs in clips.values() for c in cs) / 16000
        for n in (2, 3, 4):
            labels_n = [label for label, _ in genders[:n]]
            truth = [label for label in labels_n for _ in LINES]
            ids = sp.agglomerate(np.array([p for label in labels_n for p in prints[label]]),
                                 sp.SpeakerOptions().cluster_threshold)
            rows.append((f"piper auto voices ({n} speakers x {len(LINES)} lines)", len(truth), len(set(ids)),
                         label_accuracy([str(i) for i in ids], truth),
                         "; ".join(f"{k}: {casting[k].describe()}" for k in labels_n) if n == 4 else ""))

    print(f"{'material':44} {'cues':>5} {'found':>6} {'accuracy':>9}  notes")
    for name, n, found, acc, notes in rows:
        print(f"{name:44} {n:5d} {found:6d} {acc:9.1%}  {notes}")
    print(f"\nmodel load {load:.1f} s; first embedding call {first_call:.1f} s (numba/librosa warm-up)")
    print(f"embedding: {embed_seconds:.1f} s for {audio_seconds:.1f} s of audio = "
          f"{embed_seconds / (audio_seconds / 60):.1f} s per minute of audio (RTF {embed_seconds / audio_seconds:.2f})")


if __name__ == "__main__":
    main()
