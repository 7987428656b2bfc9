"""Whisper's own speech -> English translation: the offline English backend.

Nothing on the package registries translates Chinese text to English offline, but Whisper
was trained to translate speech. The whole episode is translated in one pass (context helps,
and Whisper pays per 30 s window, so per-line clips would cost ~5x more); each English word
is then assigned to the source cue its time falls in, keeping the output aligned one-to-one
with the cues. Cues that receive no words are retried alone on their own audio clip. The
quality is rough (base model): online or LLM backends are preferred where configured.
"""

from __future__ import annotations

from locpipe.artifacts import Cue, Word
from locpipe.backends.asr.base import ASROptions
from locpipe.backends.mt.base import TranslationBackend, TranslationRequest, register
from locpipe.errors import BackendUnavailable

#: seconds of audio kept around a cue when it is retried alone
PAD = 0.25
#: a word whose middle lies this close outside a cue still belongs to it
SLACK = 0.35
#: farther than this from every cue, an English word is dropped (music, hallucination)
MAX_DISTANCE = 1.5
SAMPLE_RATE = 16000


def sentences(words: list[Word]) -> list[Word]:
    """Group one segment's timed words into sentences (ending in . ? !) with their span.

    Word times in translate mode are approximate (the English does not follow the Chinese
    word order), but a sentence's span is reliable enough to find its cue.
    """
    out: list[Word] = []
    current: list[Word] = []
    for word in words:
        current.append(word)
        if word.text.strip().endswith((".", "?", "!", "…")):
            out.append(_merge(current))
            current = []
    if current:
        out.append(_merge(current))
    return out


def _merge(words: list[Word]) -> Word:
    return Word(start=words[0].start, end=words[-1].end, text="".join(w.text for w in words))


def assign_sentences(units: list[Word], cues: list[Cue]) -> list[str]:
    """Text per cue: each sentence goes to the cue it overlaps most (or the nearest one)."""
    buckets: list[list[str]] = [[] for _ in cues]
    for sent in units:
        best, best_score = None, None
        for i, cue in enumerate(cues):
            overlap = min(sent.end, cue.end + SLACK) - max(sent.start, cue.start - SLACK)
            distance = max(cue.start - sent.end, sent.start - cue.end, 0.0)
            score = overlap if overlap > 0 else -distance
            if best_score is None or score > best_score:
                best, best_score = i, score
        if best is not None and best_score is not None and best_score >= -MAX_DISTANCE:
            buckets[best].append(sent.text)
    return [" ".join("".join(b).split()) for b in buckets]


@register("whisper-translate")
class WhisperTranslate(TranslationBackend):
    term_mode = "post_edit"  # translates the audio: no placeholders possible

    def __init__(self, threads: int = 2):
        self.threads = threads
        self._asr = None

    @property
    def version(self) -> str:
        return f"{self._backend().version} task=translate assign=segment-sentences"

    def supports(self, source: str, target: str) -> bool:
        return target == "en"

    def check_available(self) -> None:
        from locpipe.assets import whisper_base_dir

        whisper_base_dir()

    def _backend(self):
        if self._asr is None:
            from locpipe.backends.asr.faster_whisper_asr import FasterWhisperASR

            self._asr = FasterWhisperASR(
                ASROptions(language="zh", task="translate", vad=True, word_timestamps=True, threads=self.threads)
            )
        return self._asr

    def translate(self, request: TranslationRequest) -> list[str]:
        if request.audio_16k is None:
            raise BackendUnavailable("whisper-translate needs the episode audio (speech -> English)")
        if not request.cues:
            return []
        from faster_whisper.audio import decode_audio

        audio = decode_audio(str(request.audio_16k), sampling_rate=SAMPLE_RATE)
        segments, _dropped = self._backend().transcribe_array(audio)
        texts = assign_sentences([sent for seg in segments for sent in sentences(seg.words)], request.cues)
        for i, cue in enumerate(request.cues):
            if not texts[i]:
                a = max(0, int((cue.start - PAD) * SAMPLE_RATE))
                b = min(len(audio), int((cue.end + PAD) * SAMPLE_RATE))
                alone, _ = self._backend().transcribe_array(audio[a:b])
                texts[i] = " ".join(c.text for c in alone).strip()
        return texts
