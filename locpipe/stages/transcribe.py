"""Transcribe: source-language cues for an episode.

One transcript per episode serves every market. Where the producer's script sits beside
the video (``EPISODE.zh.srt``, ``EPISODE.srt``, ``EPISODE.ass`` ...) its text is the source
and recognition only refines the timing; otherwise the ASR backend (faster-whisper by
default) recognizes the speech and drops likely hallucinations, which are recorded so QC
can show them.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

from locpipe.artifacts import Cue, SourceSubtitles, Transcript
from locpipe.backends.asr.base import ASRBackend
from locpipe.errors import InputError
from locpipe.localize.sanitize import clean_for_language

log = logging.getLogger(__name__)

#: sidecar script names tried beside ``EPISODE.mp4``, in order of preference
SIDECAR_SUFFIXES = (".zh.srt", ".zh-CN.srt", ".zh.ass", ".srt", ".ass", ".ssa", ".vtt")
#: how far a sidecar boundary may move to meet a recognized word boundary
SNAP_WINDOW = 0.4
#: OCR and ASR texts further apart than this (character error rate) are flagged
DISAGREEMENT = 0.5


def renumber(cues: list[Cue]) -> list[Cue]:
    ordered = sorted(cues, key=lambda c: (c.start, c.end))
    return [c.model_copy(update={"index": i}) for i, c in enumerate(ordered)]


def find_sidecar(video: Path) -> Path | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = video.with_name(video.stem + suffix)
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # ENAMETOOLONG: a long episode name plus the suffix cannot exist
            continue
    return None


def sidecar_digest(video: Path) -> str | None:
    """Content hash of the sidecar script (part of the transcript's cache key), or None."""
    path = find_sidecar(video)
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path else None


def read_sidecar(path: Path) -> list[Cue]:
    """Cues from an SRT/ASS/VTT script; formatting tags are removed, the text is kept."""
    import pysubs2

    try:
        subs = pysubs2.load(str(path), encoding="utf-8-sig")
    except Exception as exc:  # pysubs2 raises several unrelated types for bad files
        raise InputError(path, f"cannot read subtitle script: {exc}") from None
    cues = []
    for ev in subs:
        if ev.is_comment:
            continue
        clean = clean_for_language(ev.plaintext, (ev.end - ev.start) / 1000, "zh")  # untrusted: bounded, flat
        if clean.problem:
            log.warning("%s: cue at %.2f s: %s", path, ev.start / 1000, clean.problem)
        text = clean.text
        if text:
            cues.append(Cue(index=len(cues), start=ev.start / 1000, end=ev.end / 1000, text=text, source="sidecar"))
    return renumber(cues)


def snap_to_speech(cues: list[Cue], starts: list[float], ends: list[float], window: float = SNAP_WINDOW) -> list[Cue]:
    """Move each cue's start/end to the nearest speech onset/offset within ``window``.

    Scripts are often timed by hand and a few hundred milliseconds off; the dub and the
    subtitles both start where the speech really starts. The boundaries come from voice
    activity detection, which is tighter than Whisper's word times (biased early by ~0.1-0.3
    s on the base model). Cues never overlap afterwards.
    """
    if not starts or not ends:
        return cues

    def nearest(t: float, candidates: list[float]) -> float:
        best = min(candidates, key=lambda c: abs(c - t))
        return best if abs(best - t) <= window else t

    out: list[Cue] = []
    for cue in cues:
        start, end = nearest(cue.start, starts), nearest(cue.end, ends)
        if out and start < out[-1].end:
            start = out[-1].end
        if end <= start:
            start, end = cue.start, cue.end
        out.append(cue.model_copy(update={"start": round(start, 3), "end": round(end, 3)}))
    return out


def _overlap(a: Cue, b: Cue) -> float:
    return min(a.end, b.end) - max(a.start, b.start)


def fuse(ocr: list[Cue], asr: list[Cue]) -> list[Cue]:
    """On-screen text wins; speech never shown on screen (off-screen dialogue) comes from ASR.

    Each OCR cue takes the word timings of the ASR cues it overlaps; when the two texts
    disagree strongly the cue keeps the OCR text but gets a low confidence and a flag.
    """
    from locpipe.metrics import cer

    fused: list[Cue] = []
    used: set[int] = set()
    for cue in ocr:
        heard = [i for i, a in enumerate(asr) if _overlap(cue, a) > 0.3 * min(a.end - a.start, 1.0)]
        used.update(heard)
        asr_text = "".join(asr[i].text for i in heard)
        words = [w for i in heard for w in asr[i].words if cue.start - 0.5 <= w.start <= cue.end + 0.5]
        update: dict = {"words": words}
        if asr_text and cer(cue.text, asr_text) > DISAGREEMENT:
            update.update(confidence=round(min(cue.confidence, 0.4), 3), flags=[*cue.flags, "ocr-asr-disagree"])
        elif not asr_text:
            update.update(flags=[*cue.flags, "not-heard"])
        fused.append(cue.model_copy(update=update))
    fused += [a.model_copy(update={"flags": [*a.flags, "off-screen"]}) for i, a in enumerate(asr) if i not in used]
    return renumber(fused)


def ocr_cues(onscreen: SourceSubtitles) -> list[Cue]:
    return [Cue(index=i, start=iv.start, end=iv.end, text=re.sub(r"\s+", "", iv.text), source="ocr",
                confidence=round(iv.confidence, 3)) for i, iv in enumerate(onscreen.intervals) if iv.text.strip()]


def transcribe_audio(audio_16k: Path, backend: ASRBackend, *, language: str = "zh",
                     sidecar: Path | None = None, onscreen: SourceSubtitles | None = None,
                     recognized: tuple[list[Cue], list[dict]] | None = None) -> Transcript:
    """Source cues: a sidecar script, else burned-in text fused with ASR, else ASR alone.

    ``recognized``: ``backend.transcribe(audio_16k)`` already done (the pipeline runs it
    beside OCR); without it the backend is run here.

    Script and on-screen text give exact words but approximate times (hand timing, OCR
    sampling): their boundaries are moved to the nearest speech onset/offset.
    """
    from locpipe.backends.asr.faster_whisper_asr import speech_regions

    if sidecar is not None:
        regions = speech_regions(audio_16k)
        script = read_sidecar(sidecar)
        refined = snap_to_speech(script, [a for a, _ in regions], [b for _, b in regions])
        log.info("source text from %s (%d cues); timing refined by voice activity", sidecar.name, len(refined))
        return Transcript(language=language, cues=refined, backend="sidecar+silero-vad", model=backend.version)
    cues, dropped = recognized if recognized is not None else backend.transcribe(audio_16k)
    cues = renumber([c for c in cues if c.text.strip()])
    if onscreen is not None and onscreen.found:
        regions = speech_regions(audio_16k)
        shown = snap_to_speech(ocr_cues(onscreen), [a for a, _ in regions], [b for _, b in regions])
        cues = fuse(shown, cues)
        log.info("fused %d on-screen lines with %s: %d cues", len(shown), backend.name, len(cues))
        return Transcript(language=language, cues=cues, backend=f"ocr+{backend.name}",
                          model=f"{onscreen.backend} {onscreen.model}; {backend.version}", dropped=dropped)
    log.info("transcribed %d cues (%d dropped by guards)", len(cues), len(dropped))
    return Transcript(language=language, cues=cues, backend=backend.name, model=backend.version, dropped=dropped)
