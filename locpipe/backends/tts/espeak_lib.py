"""espeak-ng inside the ``piper-tts`` wheel: phonemes for Kokoro, robotic speech as a fallback.

``piper-tts`` ships espeak-ng statically linked into ``piper/espeakbridge.so`` with its
``espeak-ng-data``. Its Python bridge only exposes phonemes, but the library's C API
(``espeak_Initialize``, ``espeak_Synth``, ...) is exported too, so ctypes can synthesize
with it: no Debian package and no binary needed. When that library cannot be loaded, a
Debian ``espeak-ng`` binary on PATH is used instead.

espeak-ng keeps one global state (current voice, synth callback) per process, shared with
Piper's own phonemizer. Every call here holds ``LOCK`` and sets the voice and callback
again, so calls from Kokoro, the espeak backend and Piper may interleave safely within one
thread of control.
"""

from __future__ import annotations

import ctypes
import io
import logging
import re
import shutil
import subprocess
import threading
import unicodedata
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

LOCK = threading.RLock()

#: espeak_AUDIO_OUTPUT: synthesize into the callback, return when done
AUDIO_OUTPUT_SYNCHRONOUS = 2
#: espeakINITIALIZE_DONT_EXIT: report errors instead of calling exit()
INITIALIZE_DONT_EXIT = 0x8000
#: espeak_POSITION_TYPE POS_CHARACTER and espeakCHARS_UTF8
POS_CHARACTER = 1
CHARS_UTF8 = 1

INSTALL_HINT = "install piper-tts (it bundles espeak-ng) or Debian's espeak-ng (apt-get install espeak-ng)"

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class Sentence:
    """Phonemes of one sentence, with its closing punctuation kept (Kokoro reads it as prosody)."""

    phonemes: str


def _bridge():
    """Piper's espeak bridge module and its data folder, or a clear error."""
    try:
        from piper import espeakbridge
        from piper.phonemize_espeak import ESPEAK_DATA_DIR
    except ImportError as exc:
        raise BackendUnavailable(f"espeak-ng phonemes need piper-tts ({exc}); pip install piper-tts") from None
    return espeakbridge, Path(ESPEAK_DATA_DIR)


def phonemize(text: str, voice: str) -> list[Sentence]:
    """IPA phonemes of ``text`` read by espeak-ng voice ``voice`` ("es", "pt-br"), one entry per sentence.

    Language-switch flags such as "(en)" that espeak puts around foreign words are dropped;
    clause punctuation is kept so the reader pauses and raises questions.
    """
    bridge, data_dir = _bridge()
    with LOCK:
        bridge.initialize(str(data_dir))
        bridge.set_voice(voice)
        clauses = bridge.get_phonemes(text)
    sentences: list[Sentence] = []
    current = ""
    for phonemes, terminator, end_of_sentence in clauses:
        current += re.sub(r"\([^)]+\)", "", phonemes) + terminator
        if terminator in (",", ":", ";"):
            current += " "
        if end_of_sentence:
            sentences.append(Sentence(unicodedata.normalize("NFC", current.strip())))
            current = ""
    if current.strip():
        sentences.append(Sentence(unicodedata.normalize("NFC", current.strip())))
    return [s for s in sentences if s.phonemes]


# --------------------------------------------------------------------------- synthesis


class _Library:
    """The espeak-ng C library inside piper's bridge, driven through ctypes."""

    def __init__(self) -> None:
        bridge, data_dir = _bridge()
        try:
            lib = ctypes.CDLL(bridge.__file__)
            lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
            lib.espeak_Initialize.restype = ctypes.c_int
            lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
            lib.espeak_SetVoiceByName.restype = ctypes.c_int
            lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
            lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                         ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
            lib.espeak_Synth.restype = ctypes.c_int
        except (OSError, AttributeError) as exc:
            raise BackendUnavailable(f"piper's espeak bridge {bridge.__file__} exports no espeak-ng synthesis "
                                     f"API ({exc}); {INSTALL_HINT}") from None
        self._lib = lib
        self._data_dir = data_dir
        self._chunks: list[np.ndarray] = []
        self._callback = _SYNTH_CALLBACK(self._collect)  # keep a reference: ctypes does not
        self.sample_rate = self._initialize()

    def _initialize(self) -> int:
        rate = self._lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, str(self._data_dir).encode(),
                                           INITIALIZE_DONT_EXIT)
        if rate <= 0:
            raise BackendUnavailable(f"espeak-ng failed to initialize with data in {self._data_dir} (code {rate})")
        return rate

    def _collect(self, wav, count: int, _events) -> int:
        if wav and count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
        return 0  # 0: go on synthesizing

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        data = text.encode("utf-8")
        with LOCK:
            self._initialize()  # Piper's phonemizer may have re-initialized the shared library
            self._lib.espeak_SetSynthCallback(self._callback)
            if self._lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise BackendUnavailable(f"espeak-ng has no voice {voice!r} in {self._data_dir}")
            self._chunks = []
            code = self._lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None)
            chunks, self._chunks = self._chunks, []
        if code != 0:
            raise BackendUnavailable(f"espeak-ng synthesis failed (code {code}) for voice {voice!r}")
        pcm = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
        return pcm.astype(np.float32) / 32768.0


class _Binary:
    """A Debian ``espeak-ng`` executable: WAV on stdout."""

    def __init__(self, exe: str) -> None:
        self.exe = exe
        self.sample_rate = 22050

    def synthesize(self, text: str, voice: str) -> np.ndarray:
        proc = subprocess.run([self.exe, "-v", voice, "-b", "1", "--stdout", text], capture_output=True,
                              timeout=120, check=False)
        if proc.returncode != 0 or not proc.stdout:
            raise BackendUnavailable(f"{self.exe} -v {voice} failed (exit {proc.returncode}): "
                                     f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
        with wave.open(io.BytesIO(proc.stdout)) as wav:
            self.sample_rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return pcm.astype(np.float32) / 32768.0


_ENGINE: _Library | _Binary | None = None


def engine() -> _Library | _Binary:
    """The process-wide espeak-ng synthesizer: piper's bundled library, else the Debian binary."""
    global _ENGINE  # one C library state per process: the engine object mirrors it
    with LOCK:
        if _ENGINE is None:
            try:
                _ENGINE = _Library()
                log.info("espeak-ng: using the library bundled in piper-tts (%d Hz)", _ENGINE.sample_rate)
            except BackendUnavailable as exc:
                exe = shutil.which("espeak-ng")
                if exe is None:
                    raise BackendUnavailable(f"espeak-ng is not available: {exc}; {INSTALL_HINT}") from None
                _ENGINE = _Binary(exe)
                log.info("espeak-ng: using %s (%s)", exe, exc)
        return _ENGINE
