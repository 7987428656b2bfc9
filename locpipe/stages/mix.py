"""Mix: the market's programme audio, the dub over the original's music and effects, at the loudness target.

Without a dub the original track is only loudness-normalized. With a dub, the dub goes over
the original's accompaniment (music and effects) when the separate stage split the original
into vocals and accompaniment (method "separated", :mod:`locpipe.backends.separation`): the original
dialogue is gone, the music keeps its full level. When separation is unavailable (or the
market sets ``dub.background: duck``) the original is ducked under the dub by a sidechain
compressor keyed by the dub (method "duck"), and the result says why, for QC. Either way the
two are summed and the sum is normalized.

Loudness is two-pass so the gain is constant (no pumping): pass 1 measures, pass 2 applies
loudnorm with the measured values and ``linear=true``. Linear mode is only possible when
the loudest true peak, raised by that gain, stays under the target; ffmpeg silently falls
back to dynamic mode otherwise. Dialogue peaks usually sit 15-20 dB over its loudness,
more than a -14 LUFS / -1 dBTP target allows, so such material is peak-limited first (a
transparent look-ahead limiter a couple of dB under the ceiling) and measured again, which
keeps the final pass linear. The result is measured once more and those figures are what
the artifact reports.
"""

from __future__ import annotations

import logging
import math
import re
import wave
from pathlib import Path

import numpy as np

from locpipe.artifacts import DubTrack, MediaInfo, MixResult
from locpipe.config import LoudnessTarget, Market
from locpipe.errors import StageError
from locpipe.media.ffmpeg import Loudness, measure_loudness, run_ffmpeg

log = logging.getLogger(__name__)

SAMPLE_RATE = 48000
#: measure_loudness reports digital silence (-inf) as -99; anything under this is "silent"
SILENT_LUFS = -70.0
#: a mono dub panned to both channels at unity is this much louder than measured mono (LU)
MONO_TO_STEREO_LU = 10 * math.log10(2)
#: dub speech sits this far above the original's loudness (LU); 0 keeps the original balance
DUB_OVER_ORIGINAL_LU = 0.0
#: the dub is never raised or lowered by more than this (dB) to match the original
MAX_DUB_GAIN_DB = 24.0
#: ducking compressor: hard ratio so the depth follows the threshold; quick attack, slow release
DUCK_RATIO = 20.0
DUCK_ATTACK_MS = 10.0
DUCK_RELEASE_MS = 400.0
#: sidechaincompress's lowest accepted threshold (amplitude)
MIN_THRESHOLD = 0.000976563
#: headroom kept by the peak limiter under the true-peak target (dB): its ceiling is sample
#: peak, and inter-sample peaks plus the final small make-up gain must still fit
LIMIT_HEADROOM_DB = 2.0
#: linear loudnorm is attempted directly when peaks leave at least this much room (dB)
LINEAR_MARGIN_DB = 0.1


# --------------------------------------------------------------------------- pure helpers


def is_silent(loudness: Loudness) -> bool:
    return loudness.integrated <= SILENT_LUFS


def dub_gain_db(original_lufs: float, dub_lufs: float) -> float:
    """Gain for the (mono) dub so its speech sits at the original's loudness once in stereo.

    The original's gated loudness is dominated by its dialogue in a drama, so matching it keeps
    the original balance between dialogue and the music bed. A silent side means no basis:
    the dub is left as synthesized.
    """
    if original_lufs <= SILENT_LUFS or dub_lufs <= SILENT_LUFS:
        return 0.0
    gain = original_lufs + DUB_OVER_ORIGINAL_LU - (dub_lufs + MONO_TO_STEREO_LU)
    return max(-MAX_DUB_GAIN_DB, min(MAX_DUB_GAIN_DB, gain))


def duck_threshold(key_rms_db: float, duck_db: float, ratio: float = DUCK_RATIO) -> float:
    """Compressor threshold (amplitude) that turns the original down by about ``duck_db``.

    Above the threshold a compressor removes (level - threshold) * (1 - 1/ratio) dB, so for
    the dub's typical speech level the threshold sits duck/(1 - 1/ratio) dB below it. Louder
    syllables duck a little deeper, quieter ones a little less.
    """
    depth = abs(duck_db) / (1.0 - 1.0 / ratio)
    return max(MIN_THRESHOLD, min(1.0, 10 ** ((key_rms_db - depth) / 20)))


def active_rms_db(audio: np.ndarray, sample_rate: int, floor_db: float = -50.0) -> float:
    """RMS level (dBFS) of the 50 ms frames that carry sound: the dub's speech level, gaps excluded."""
    win = max(1, int(0.05 * sample_rate))
    frames = audio[: audio.size // win * win].reshape(-1, win).astype(np.float64)
    if frames.size == 0:
        return -120.0
    power = (frames**2).mean(axis=1)
    active = power[power > 10 ** (floor_db / 10)]
    if active.size == 0:
        return -120.0
    return float(10 * np.log10(active.mean()))


def conform(label_in: str, label_out: str, samples: int, *, mono_source: bool = False) -> str:
    """Filter chain: 48 kHz float stereo, padded or cut to exactly ``samples``."""
    pan = "pan=stereo|c0=c0|c1=c0," if mono_source else ""
    return (f"[{label_in}]aresample={SAMPLE_RATE},{pan}aformat=sample_fmts=fltp:sample_rates={SAMPLE_RATE}"
            f":channel_layouts=stereo,apad,atrim=end_sample={samples}[{label_out}]")


def duck_graph(samples: int, gain_db: float, threshold: float, *, original: str = "0:a:0",
               dub: str = "1:a:0") -> str:
    """Filtergraph: original ducked by the dub (unscaled dub as key), plus the dub at ``gain_db``."""
    return ";".join([
        conform(original, "orig", samples),
        conform(dub, "dubs", samples, mono_source=True),
        "[dubs]asplit=2[key][dubmix]",
        f"[dubmix]volume={gain_db:.2f}dB[dub]",
        f"[orig][key]sidechaincompress=threshold={threshold:.6f}:ratio={DUCK_RATIO:g}:attack={DUCK_ATTACK_MS:g}"
        f":release={DUCK_RELEASE_MS:g}:detection=rms:link=maximum[ducked]",
        "[ducked][dub]amix=inputs=2:duration=first:normalize=0[out]",
    ])


def separated_graph(samples: int, gain_db: float, *, accompaniment: str = "0:a:0", dub: str = "1:a:0") -> str:
    """Filtergraph: the original's accompaniment at unity plus the dub at ``gain_db`` (no ducking)."""
    return ";".join([
        conform(accompaniment, "bed", samples),
        conform(dub, "dubs", samples, mono_source=True),
        f"[dubs]volume={gain_db:.2f}dB[dub]",
        "[bed][dub]amix=inputs=2:duration=first:normalize=0[out]",
    ])


def needs_limiting(measured: Loudness, target: LoudnessTarget) -> bool:
    """Whether the linear gain would push true peaks over the ceiling (loudnorm would go dynamic)."""
    gain = target.integrated - measured.integrated
    return measured.true_peak + gain > target.true_peak - LINEAR_MARGIN_DB


def limiter_chain(measured: Loudness, target: LoudnessTarget) -> str:
    """Gain to the target loudness, then a look-ahead limiter under the true-peak ceiling."""
    gain = target.integrated - measured.integrated
    ceiling = 10 ** ((target.true_peak - LIMIT_HEADROOM_DB) / 20)
    return (f"volume={gain:.2f}dB,alimiter=limit={max(0.0625, ceiling):.5f}:attack=5:release=50"
            ":level=false:latency=true")


def loudnorm_filter(measured: Loudness, target: LoudnessTarget) -> str:
    """Second-pass loudnorm with the first pass's measurements, linear (constant gain)."""
    return (f"loudnorm=I={target.integrated:g}:TP={target.true_peak:g}:LRA={target.lra:g}"
            f":measured_I={measured.integrated:.2f}:measured_TP={measured.true_peak:.2f}"
            f":measured_LRA={measured.lra:.2f}:measured_thresh={measured.threshold:.2f}"
            ":linear=true:print_format=json")


def normalization_type(loudnorm_stderr: str) -> str:
    """"linear" or "dynamic" from loudnorm's JSON report ("" if it printed none)."""
    match = re.search(r'"normalization_type"\s*:\s*"(\w+)"', loudnorm_stderr)
    return match.group(1) if match else ""


# --------------------------------------------------------------------------- I/O


def _read_wav_mono(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV (what the synthesize stage writes) as float32 of the first channel."""
    with wave.open(str(path), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise StageError("mix", f"{path.name}: expected 16-bit PCM, got {8 * wav.getsampwidth()}-bit")
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        channels, rate = wav.getnchannels(), wav.getframerate()
    return (data[::channels].astype(np.float32) / 32768.0), rate


def _source_args(source_video: Path, has_audio: bool, duration: float) -> list[str]:
    """Input arguments for the original audio; a file without audio becomes digital silence."""
    if has_audio:
        return ["-i", str(source_video)]
    log.warning("%s has no audio stream; the original is treated as silence", source_video.name)
    return ["-f", "lavfi", "-t", f"{duration:.6f}", "-i", f"anullsrc=r={SAMPLE_RATE}:cl=stereo"]


def _render_premix(source_video: Path, has_audio: bool, dub_wav: Path | None, duck_db: float, samples: int,
                   duration: float, dst: Path, accompaniment: Path | None = None) -> None:
    """Original (or its accompaniment) under the dub when there is one, as 48 kHz float stereo, before loudness."""
    src = _source_args(source_video, has_audio, duration)
    if dub_wav is None:
        graph, inputs = conform("0:a:0", "out", samples), src
    else:
        original = Loudness(-99.0, -99.0, 0.0, -70.0) if "lavfi" in src else measure_loudness(source_video)
        dub = measure_loudness(dub_wav)
        gain = dub_gain_db(original.integrated, dub.integrated)
        if accompaniment is not None:
            # the dub takes the original dialogue's place: same loudness basis, no ducking
            log.info("mix: original %.1f LUFS, dub %.1f LUFS -> dub gain %+.1f dB over the separated accompaniment",
                     original.integrated, dub.integrated, gain)
            graph, inputs = separated_graph(samples, gain), ["-i", str(accompaniment), "-i", str(dub_wav)]
        else:
            audio, rate = _read_wav_mono(dub_wav)
            threshold = duck_threshold(active_rms_db(audio, rate), duck_db)
            log.info("mix: original %.1f LUFS, dub %.1f LUFS -> dub gain %+.1f dB, duck threshold %.4f",
                     original.integrated, dub.integrated, gain, threshold)
            graph, inputs = duck_graph(samples, gain, threshold), [*src, "-i", str(dub_wav)]
    run_ffmpeg([*inputs, "-filter_complex", graph, "-map", "[out]", "-c:a", "pcm_f32le", str(dst)],
               what=f"mix of {source_video.name}")


def _finish(src: Path, dst: Path, chain: str, samples: int, what: str) -> str:
    """Apply ``chain`` and write 48 kHz stereo 16-bit PCM of exactly ``samples``; return stderr."""
    tail = f"aresample={SAMPLE_RATE},apad,atrim=end_sample={samples}"
    return run_ffmpeg(["-i", str(src), "-af", f"{chain},{tail}" if chain else tail, "-ar", str(SAMPLE_RATE),
                       "-ac", "2", "-c:a", "pcm_s16le", str(dst)], what=what)


def normalize_loudness(src: Path, dst: Path, target: LoudnessTarget, samples: int) -> Loudness:
    """Two-pass loudness normalization of ``src`` into ``dst``; returns the measured result."""
    measured = measure_loudness(src)
    if is_silent(measured):
        log.warning("mix: audio is silent (loudness -inf); written without normalization, reported as -99 LUFS")
        _finish(src, dst, "", samples, "silent mix")
        return Loudness(-99.0, -99.0, 0.0, -70.0)
    if needs_limiting(measured, target):
        # linear loudnorm would be refused: bring peaks under the ceiling first, then re-measure
        limited = src.with_name(f".{src.stem}.limited.wav")
        run_ffmpeg(["-i", str(src), "-af", limiter_chain(measured, target), "-c:a", "pcm_f32le", str(limited)],
                   what="peak limiting")
        log.info("mix: peaks %.1f dBTP at %.1f LUFS leave no room for %.1f dBTP; limited first",
                 measured.true_peak, measured.integrated, target.true_peak)
        src, measured = limited, measure_loudness(limited)
    try:
        report = _finish(src, dst, loudnorm_filter(measured, target), samples, "loudness normalization")
    finally:
        if src.name.endswith(".limited.wav"):
            src.unlink(missing_ok=True)
    kind = normalization_type(report)
    if kind != "linear":
        log.warning("mix: loudnorm used %s mode (peaks too high for a constant gain)", kind or "an unknown")
    result = measure_loudness(dst)
    if result.true_peak > target.true_peak + 0.2 or abs(result.integrated - target.integrated) > 1.0:
        log.warning("mix: result %.2f LUFS / %.2f dBTP misses the target %.1f LUFS / %.1f dBTP",
                    result.integrated, result.true_peak, target.integrated, target.true_peak)
    log.info("mix: %.2f LUFS, %.2f dBTP, LRA %.1f (target %.1f LUFS, %.1f dBTP)", result.integrated,
             result.true_peak, result.lra, target.integrated, target.true_peak)
    return result


def mix_audio(source: MediaInfo, dub: DubTrack | None, dub_dir: Path | None, market: Market, duration: float,
              out_dir: Path, *, accompaniment: Path | None = None, background_note: str = "") -> MixResult:
    """Programme audio for ``market``: ``mix.wav``, 48 kHz stereo, exactly ``duration`` seconds.

    ``accompaniment``: the original's separated music and effects; the dub is mixed over it
    instead of over the ducked original. ``background_note`` says why there is none (for QC).
    ``source``: the episode as ingest probed it (its ``has_audio`` is used, the file is not
    probed again).
    """
    if accompaniment is not None and not accompaniment.exists():
        raise StageError("mix", f"separated accompaniment missing: {accompaniment}")
    if duration <= 0:
        raise StageError("mix", f"duration must be positive, got {duration}")
    dub_wav = None
    if dub is not None:
        if dub_dir is None:
            raise StageError("mix", "a dub track was given without its directory")
        dub_wav = dub_dir / dub.wav
        if not dub_wav.exists():
            raise StageError("mix", f"dub audio missing: {dub_wav}")
    samples = int(round(duration * SAMPLE_RATE))
    target = market.config.loudness
    separated = dub_wav is not None and accompaniment is not None
    method = "separated" if separated else "duck" if dub_wav else "original"
    result = MixResult(method=method, measured_lufs=-99.0, measured_true_peak=-99.0, target_lufs=target.integrated,
                       background_note=background_note if method == "duck" else "")
    source_video, has_audio = Path(source.path), source.has_audio
    premix = out_dir / ".premix.wav"
    try:
        _render_premix(source_video, has_audio, dub_wav, market.config.dub.duck_db, samples, duration, premix,
                       accompaniment if separated else None)
        measured = normalize_loudness(premix, out_dir / result.wav, target, samples)
    finally:
        premix.unlink(missing_ok=True)
    return result.model_copy(update={"measured_lufs": round(measured.integrated, 2),
                                     "measured_true_peak": round(measured.true_peak, 2)})
