"""openai-whisper (PyTorch) backend: the reference Whisper implementation.

Why keep it beside faster-whisper: it is the implementation the design names and the one
research checkpoints come in, and it decodes in fp32 PyTorch, a useful cross-check on the
int8 CTranslate2 default. It is ~6x slower on CPU, so it is never the default.

Weights: by default the packaged Whisper base weights, converted once from their
CTranslate2 form (:mod:`locpipe.backends.asr.whisper_convert`); or ``options.model`` as a
checkpoint path, or an openai-whisper model name (downloaded by openai-whisper where its
download host is reachable, otherwise :class:`BackendUnavailable` saying what to do).
Output shape, t2s normalization and hallucination guards are shared with faster-whisper
(:mod:`locpipe.backends.asr.common`).
"""

from __future__ import annotations

import logging
import os
import time
from importlib.metadata import version as pkg_version
from pathlib import Path

import numpy as np

from locpipe.backends.asr.base import ASROptions, register
from locpipe.backends.asr.common import (
    GUARDS_ID,
    MIN_SAMPLES,
    SAMPLE_RATE,
    ChineseNormalizer,
    DecodedSegment,
    DecodedWord,
    WhisperFamilyASR,
    segments_to_cues,
)
from locpipe.backends.asr.whisper_convert import CONVERTER_VERSION, INSTALL_HINT
from locpipe.backends.registry import MODEL_LOADED
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

#: seconds to wait for openai-whisper's download host before calling a model name unreachable
PROBE_TIMEOUT = 5.0
#: speech regions closer than this are decoded as one clip (each clip costs a 30 s encoder pass)
CLIP_MERGE_GAP = 2.0
#: longest merged clip, seconds: one Whisper window
CLIP_MAX = 30.0
#: openai-whisper's mel frames: 10 ms hops of 160 samples
HOP_LENGTH = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH


@register("openai-whisper")
class OpenAIWhisperASR(WhisperFamilyASR):
    def __init__(self, options: ASROptions):
        _require_packages()
        self.options = options
        self._model = None
        self._normalize = ChineseNormalizer(options.language, options.task)

    @property
    def version(self) -> str:
        """Library, model identity and decoding settings: part of the transcript's cache key.

        A checkpoint path carries its size and modification time, so replacing the file
        redoes the transcripts made with it.
        """
        model = self.options.model or f"packaged-whisper-base(converted v{CONVERTER_VERSION})"
        if self.options.model and Path(model).is_file():
            st = Path(model).stat()
            model = f"{model} ({st.st_size} bytes, mtime {int(st.st_mtime)})"
        return (f"openai-whisper {pkg_version('openai-whisper')} torch {pkg_version('torch')} model={model} "
                f"fp32 beam={self.options.beam_size} vad={self.options.vad} {GUARDS_ID}")

    def _load(self):
        if self._model is None:
            whisper = _import_whisper()
            checkpoint, heads = self._checkpoint(whisper)
            started = time.perf_counter()
            try:
                model = whisper.load_model(checkpoint, device=self.options.device, download_root=str(_download_root()))
            except Exception as exc:  # download, unpickling and shape errors come in many types
                raise BackendUnavailable(f"openai-whisper cannot load model {checkpoint!r}: {exc}") from None
            if heads:
                from locpipe.backends.asr.whisper_convert import alignment_heads_dump

                dims = model.dims
                model.set_alignment_heads(alignment_heads_dump(heads, dims.n_text_layer, dims.n_text_head))
            self._model = model
            log.info(MODEL_LOADED, f"openai-whisper {checkpoint}", time.perf_counter() - started)
        return self._model

    def _checkpoint(self, whisper) -> tuple[str, list[list[int]] | None]:
        """(what ``whisper.load_model`` gets, alignment heads to set or None for its own)."""
        ref = self.options.model
        if not ref:
            from locpipe.assets import whisper_base_dir
            from locpipe.backends.asr.whisper_convert import alignment_heads, convert_packaged_whisper

            return str(convert_packaged_whisper()), alignment_heads(whisper_base_dir())
        if Path(ref).is_file():
            return ref, None
        if ref.endswith(".pt") or os.sep in ref:
            raise BackendUnavailable(f"openai-whisper checkpoint file not found: {ref}")
        if ref not in whisper.available_models():
            raise BackendUnavailable(
                f"openai-whisper model {ref!r} is neither a checkpoint file nor a model name "
                f"({', '.join(whisper.available_models())}); omit --model for the packaged Whisper base weights."
            )
        _require_download(whisper, ref)
        return ref, None

    def transcribe_array(self, audio: np.ndarray, *, offset: float = 0.0, prompt: str | None = None):
        """Recognize a 16 kHz float array; times are shifted by ``offset`` seconds."""
        opts = self.options
        if audio.size < MIN_SAMPLES:
            return [], []
        model = self._load()
        clips = speech_clips(audio) if opts.vad else [0.0]
        if not clips:
            return [], []
        _set_threads(opts.threads)
        result = model.transcribe(
            audio.astype(np.float32),
            language=opts.language,
            task=opts.task,
            beam_size=opts.beam_size,
            word_timestamps=opts.word_timestamps,
            condition_on_previous_text=False,
            initial_prompt=prompt,
            fp16=False,
            clip_timestamps=clips,
            verbose=None,
        )
        return segments_to_cues(map(_decoded, result["segments"]), offset=offset, normalize=self._normalize)


def _decoded(seg: dict) -> DecodedSegment:
    """openai-whisper's segment dict in the shared shape."""
    words = [DecodedWord(w["start"], w["end"], w["word"], w["probability"]) for w in seg.get("words") or []]
    return DecodedSegment(seg["start"], seg["end"], seg["text"], seg["no_speech_prob"], seg["avg_logprob"],
                          seg["compression_ratio"], words)


def speech_clips(audio: np.ndarray) -> list[float]:
    """VAD speech regions as openai-whisper ``clip_timestamps`` (start, end, start, end ...).

    openai-whisper has no VAD; the silero model bundled with faster-whisper finds speech.
    Music-only stretches are then never decoded, as with faster-whisper.
    """
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    regions = [(t["start"] / SAMPLE_RATE, t["end"] / SAMPLE_RATE)
               for t in get_speech_timestamps(audio, VadOptions())]
    return merge_clips(regions, frames=audio.size // HOP_LENGTH)


def merge_clips(regions: list[tuple[float, float]], *, frames: int) -> list[float]:
    """Speech regions (seconds) as flat clip timestamps on openai-whisper's 10 ms frame grid.

    Neighbouring regions are merged (up to one 30 s window) because every clip costs a full
    encoder pass. Ends are clamped to the audio's last mel frame (``frames``): openai-whisper
    loops forever on a clip that ends past the audio (VAD padding can put it there).
    """
    merged: list[list[int]] = []
    for start, end in regions:
        first, last = int(np.floor(start * FRAMES_PER_SECOND)), min(int(np.ceil(end * FRAMES_PER_SECOND)), frames)
        if last <= first:
            continue
        if merged and first - merged[-1][1] <= CLIP_MERGE_GAP * FRAMES_PER_SECOND \
                and last - merged[-1][0] <= CLIP_MAX * FRAMES_PER_SECOND:
            merged[-1][1] = last
        else:
            merged.append([first, last])
    return [f / FRAMES_PER_SECOND for pair in merged for f in pair]


def _require_packages() -> None:
    """Fail when the backend is chosen, not mid-run: torch and openai-whisper are optional.

    ``find_spec`` checks without importing torch (seconds of start-up).
    """
    from importlib.util import find_spec

    missing = [pip for module, pip in (("torch", "torch"), ("whisper", "openai-whisper")) if find_spec(module) is None]
    if missing:
        raise BackendUnavailable(f"the openai-whisper backend needs {' and '.join(missing)} "
                                 f"(not installed): {INSTALL_HINT}")


def _import_whisper():
    """The ``whisper`` module, or BackendUnavailable naming the extra (torch is optional)."""
    try:
        import whisper
    except ImportError as exc:
        raise BackendUnavailable(f"the openai-whisper backend needs torch and openai-whisper ({exc}): "
                                 f"{INSTALL_HINT}") from None
    return whisper


def _download_root() -> Path:
    """Where openai-whisper keeps downloaded checkpoints (its own default: ~/.cache/whisper)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "whisper"


def _require_download(whisper, name: str) -> None:
    """Fail fast, before openai-whisper's untimed download, when ``name`` cannot be fetched.

    A checkpoint already in the download root is used as is; otherwise the download host
    must answer within PROBE_TIMEOUT seconds (and offline mode forbids trying at all).
    """
    import urllib.request

    url = whisper._MODELS[name]
    if (_download_root() / os.path.basename(url)).is_file():
        return
    hint = (f"openai-whisper model {name!r} is not downloaded and {{why}}. Pass a checkpoint path "
            "(--model FILE.pt), or omit --model for the packaged Whisper base weights "
            "(locpipe models convert-whisper).")
    if _offline():
        raise BackendUnavailable(hint.format(why="offline mode is set (HF_HUB_OFFLINE / LOCPIPE_OFFLINE)"))
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT).close()
    except OSError as exc:
        raise BackendUnavailable(hint.format(why=f"its download host is unreachable ({exc})")) from None


def _offline() -> bool:
    return any(os.environ.get(v, "") not in ("", "0") for v in ("HF_HUB_OFFLINE", "LOCPIPE_OFFLINE"))


def _set_threads(threads: int) -> None:
    """PyTorch's intra-op thread count is process-wide; set it to the configured budget."""
    import torch

    if threads and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
