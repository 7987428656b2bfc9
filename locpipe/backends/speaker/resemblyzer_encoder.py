"""Speaker embeddings: the voice-print encoder inside the ``Resemblyzer`` wheel (256-d).

The engine behind the ``speakers`` stage. Importing torch and loading the encoder costs
seconds the first time, so a worker loads it once (``locpipe.core.resources.Resources``)
and hands it to every episode.
"""

from __future__ import annotations

import importlib.metadata
import logging
import time
import warnings

import numpy as np

from locpipe.backends.registry import MODEL_LOADED
from locpipe.backends.speaker import SPEAKER_ENCODERS
from locpipe.errors import BackendUnavailable
from locpipe.media.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

BACKEND = "resemblyzer"


class SpeakersUnavailable(BackendUnavailable):
    """The speaker-embedding model cannot run here (Resemblyzer or torch missing)."""


def model_version() -> str | None:
    """``resemblyzer==X`` when the speaker model can be imported here, else None (cheap)."""
    try:
        return f"{BACKEND}=={importlib.metadata.version('Resemblyzer')}"
    except importlib.metadata.PackageNotFoundError:
        return None


@SPEAKER_ENCODERS.register(BACKEND)
def load_encoder(threads: int = 0):
    """Resemblyzer's VoiceEncoder on the CPU (weights from the wheel; ~0.1 s once imported)."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():  # webrtcvad imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            import torch
            from resemblyzer import VoiceEncoder
    except Exception as exc:  # ImportError, or webrtcvad's pkg_resources gone (setuptools >= 81)
        raise SpeakersUnavailable(f"speaker labels need Resemblyzer and torch ({type(exc).__name__}: {exc}); "
                                  "pip install 'locpipe[speakers]'") from None
    if threads > 0:
        torch.set_num_threads(threads)
    encoder = VoiceEncoder("cpu", verbose=False)
    log.info(MODEL_LOADED, "Resemblyzer voice encoder", time.perf_counter() - started)
    return encoder


def preprocess(audio: np.ndarray) -> np.ndarray:
    """Resemblyzer's input conditioning of 16 kHz audio: level normalized, long silences cut."""
    from resemblyzer import preprocess_wav

    return preprocess_wav(np.asarray(audio, dtype=np.float32)) if audio.size else audio


def embed_segments(encoder, audio: np.ndarray, spans: list[tuple[float, float]]) -> list[np.ndarray | None]:
    """One voice print per (start, end) span; None where no voice is left after VAD trimming."""
    out: list[np.ndarray | None] = []
    for start, end in spans:
        wav = preprocess(audio[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)])
        out.append(encoder.embed_utterance(wav) if wav.size >= int(0.3 * SAMPLE_RATE) else None)
    return out
