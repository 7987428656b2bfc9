"""What a promo's choice is measured from: scene cuts, speech energy per line, the model's conflict rating.

Thin I/O around ``locpipe.stages.promo_select`` (which only sees numbers):

- scene cuts: one ffmpeg decode of the episode at low resolution through
  ``select='gt(scene,T)'``, the cut times parsed from ``showinfo``;
- energy: RMS of each line in the episode's 16 kHz dialogue audio (ingest's), in dB;
- conflict: one short request to the local translation model per episode, rating every
  line 0-9 (answers memoized by the backend; only where the model is installed).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np

from locpipe.media.audio import SAMPLE_RATE, read_wav_16k
from locpipe.media.ffmpeg import run_ffmpeg

log = logging.getLogger(__name__)

#: scene-change score above which a frame starts a new shot (ffmpeg's scene detection)
SCENE_THRESHOLD = 0.3
#: width the picture is decoded to for scene detection: cheap, and enough to see a cut
SCENE_WIDTH = 160
SCENE_VERSION = 1
_PTS_RE = re.compile(r"pts_time:\s*([0-9.]+)")


def scene_cut_args(video: Path, threshold: float = SCENE_THRESHOLD) -> list[str]:
    """ffmpeg arguments printing one ``showinfo`` line per shot change (video only, small)."""
    return ["-an", "-sn", "-i", str(video), "-vf",
            f"scale={SCENE_WIDTH}:-2:flags=fast_bilinear,select='gt(scene,{threshold:g})',showinfo",
            "-f", "null", "-"]


def parse_scene_cuts(stderr: str) -> list[float]:
    return sorted({round(float(m.group(1)), 3) for m in _PTS_RE.finditer(stderr)})


def detect_scene_cuts(video: Path, threshold: float = SCENE_THRESHOLD) -> list[float]:
    """Shot changes of ``video`` (seconds), from one low-resolution decode."""
    return parse_scene_cuts(run_ffmpeg(scene_cut_args(video, threshold), what=f"scene detection of {video.name}"))


def rms_db(samples: np.ndarray) -> float | None:
    if samples.size == 0:
        return None
    rms = float(np.sqrt(np.mean(np.square(samples.astype(np.float64)))))
    return round(20 * np.log10(max(rms, 1e-6)), 2)


def line_rms_db(audio_16k: Path, spans: list[tuple[float, float]]) -> list[float | None]:
    """RMS (dB) of the dialogue audio inside each (start, end)."""
    audio = read_wav_16k(audio_16k)
    out = []
    for a, b in spans:
        out.append(rms_db(audio[int(a * SAMPLE_RATE):int(b * SAMPLE_RATE)]))
    return out


# --------------------------------------------------------------------------- the local model

RATING_PROMPT = ("You rate lines of a Chinese short drama for conflict and drama (a slap, a reveal, a "
                 "confrontation, a betrayal, a threat): 0 calm small talk, 9 the most dramatic moment. "
                 'Answer JSON only: {"1": "digit", "2": "digit", ...} with one digit 0-9 per line.')
RATING_VERSION = 1


def rating_messages(texts: list[str]) -> list[dict]:
    lines = "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))
    return [{"role": "system", "content": RATING_PROMPT}, {"role": "user", "content": lines}]


def parse_ratings(answer: str, n: int) -> list[int | None]:
    """The model's answer as one 0-9 rating per line (None where it gave none)."""
    try:
        data = json.loads(answer)
    except ValueError:
        return [None] * n
    out: list[int | None] = []
    for i in range(1, n + 1):
        digits = re.findall(r"\d", str(data.get(str(i), ""))) if isinstance(data, dict) else []
        out.append(min(9, int(digits[0])) if digits else None)
    return out


def llm_ratings(backend, texts: list[str]) -> list[int | None]:
    """One request rating every line (the local backend's constrained, memoized completion).

    ``backend`` is the ``local-llm`` translation engine from ``Resources``; anything that
    goes wrong leaves the lines unrated (the rules still score them) and is logged.
    """
    if not texts:
        return []
    try:
        backend.check_available()
        answer = backend._complete(rating_messages(texts), list(range(1, len(texts) + 1)))
    except Exception as exc:  # the model is optional: rules alone still choose
        log.info("promo: lines not rated by the local model (%s)", exc)
        return [None] * len(texts)
    return parse_ratings(answer, len(texts))
