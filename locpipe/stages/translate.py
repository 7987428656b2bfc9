"""Translate: target-language text for every source cue, one-to-one.

Backend output is treated as untrusted data: control characters and line breaks are
flattened, and CJK characters that leak into a non-CJK language are removed and recorded
(Whisper sometimes answers a short clip in Chinese). The backend can never add or drop lines:
a count mismatch is an error.
"""

from __future__ import annotations

import logging
import re
import unicodedata

from locpipe.artifacts import Transcript, TranslatedCue, Translation
from locpipe.backends.mt.base import TranslationBackend, TranslationRequest
from locpipe.errors import StageError

log = logging.getLogger(__name__)

#: Han, Hiragana/Katakana, Hangul, CJK punctuation and full-width forms
CJK_RE = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
CJK_LANGUAGES = {"zh", "ja", "ko"}


def clean_text(text: str) -> str:
    """Flatten whitespace and drop control/format characters a backend may return."""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def remove_cjk(text: str) -> str:
    return re.sub(r"\s+", " ", CJK_RE.sub(" ", text)).strip()


def build_translation(transcript: Transcript, texts: list[str], language: str, backend_name: str) -> Translation:
    if len(texts) != len(transcript.cues):
        raise StageError("translate", f"{backend_name} returned {len(texts)} lines for {len(transcript.cues)} cues")
    base = language.split("-")[0].lower()
    notes: list[str] = []
    cues: list[TranslatedCue] = []
    for cue, raw in zip(transcript.cues, texts, strict=True):
        text = clean_text(raw)
        if base not in CJK_LANGUAGES and CJK_RE.search(text):
            notes.append(f"cue {cue.index}: removed CJK characters from {text!r}")
            text = remove_cjk(text)
        if not text:
            notes.append(f"cue {cue.index}: untranslated ({cue.text!r})")
        cues.append(TranslatedCue(index=cue.index, start=cue.start, end=cue.end, source_text=cue.text,
                                  text=text, speaker=cue.speaker))
    return Translation(language=language, backend=backend_name, cues=cues, notes=notes)


def translate_transcript(transcript: Transcript, language: str, backend: TranslationBackend, audio_16k=None) -> Translation:
    request = TranslationRequest(cues=transcript.cues, source_lang=transcript.language, target_lang=language,
                                 audio_16k=audio_16k)
    texts = backend.translate(request) if transcript.cues else []
    translation = build_translation(transcript, texts, language, backend.name)
    for note in translation.notes:
        log.warning("translate %s: %s", language, note)
    return translation
