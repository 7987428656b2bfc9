"""Typed artifacts passed between stages and stored (as JSON) in the work directory.

Every stage boundary has a named shape. File references inside an artifact are names
relative to the artifact's own directory in the store, so an artifact directory can be
moved or renamed atomically as a whole.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Artifact(BaseModel):
    model_config = ConfigDict(extra="ignore")


class MediaInfo(Artifact):
    """What ingest learned about a source episode."""

    path: str
    sha256: str
    size: int
    duration: float
    width: int
    height: int
    #: display aspect after rotation and sample aspect ratio
    display_width: int
    display_height: int
    fps: float
    rotation: int = 0
    sar: float = 1.0
    video_codec: str = ""
    has_audio: bool = True
    audio_codec: str = ""
    audio_channels: int = 0
    sample_rate: int = 0
    #: YCbCr matrix tag of the video stream (AVColorSpace code: 1 BT.709, 5 BT.470BG,
    #: 6 SMPTE 170M, ...); None when untagged (render then picks by size, see
    #: locpipe.render.graph.input_matrix). Recorded at ingest so render need not open the
    #: source again; a MediaInfo cached before the field existed reads as untagged.
    color_matrix: int | None = None


class IngestResult(Artifact):
    info: MediaInfo
    #: mono 16 kHz WAV of the source audio, the shared input of ASR and separation
    audio_16k: str = "audio16k.wav"


class Word(Artifact):
    start: float
    end: float
    text: str
    probability: float = 1.0


class Cue(Artifact):
    """One line of dialogue in the source language."""

    index: int
    start: float
    end: float
    text: str
    words: list[Word] = []
    speaker: str | None = None
    confidence: float = 1.0
    source: Literal["asr", "ocr", "sidecar"] = "asr"
    flags: list[str] = []


class Transcript(Artifact):
    language: str = "zh"
    cues: list[Cue]
    backend: str
    model: str
    #: segments dropped by the hallucination guards, with the reason, for QC
    dropped: list[dict] = []
    #: a linguist's corrected transcript (locpipe.core.review): {file, mtime, edited, problems, warnings}
    review: dict = {}


class CueSpeaker(Artifact):
    """Who speaks one source cue (locpipe.stages.speakers)."""

    index: int
    speaker: str
    #: "embedded": its own voice print; "nearest": too short to embed, took the nearest
    #: embedded cue's label; "fallback": no speaker model here, everyone is S1
    method: Literal["embedded", "nearest", "fallback"] = "embedded"


class SpeakerSummary(Artifact):
    label: str
    cues: int
    seconds: float
    #: median fundamental frequency of the speaker's voiced audio (Hz), None when unmeasured
    pitch_hz: float | None = None
    #: guessed from pitch ("male"/"female") for picking a voice; "unknown" when unsure
    gender: str = "unknown"
    #: cosine similarity to the series voice print it matched; None: new in the series
    matched: float | None = None


class SpeakerLabels(Artifact):
    """Speaker labels of an episode's cues, consistent across the series (S1, S2, ...)."""

    available: bool
    backend: str = "resemblyzer"
    model: str = ""
    cues: list[CueSpeaker] = []
    speakers: list[SpeakerSummary] = []
    #: why labels are missing or rough, for QC
    notes: list[str] = []
    #: the series speaker store (voice prints) the labels were matched against
    store: str = ""
    seconds: float = 0.0


class TranslatedCue(Artifact):
    index: int
    start: float
    end: float
    source_text: str
    text: str
    speaker: str | None = None


class Translation(Artifact):
    language: str
    backend: str
    cues: list[TranslatedCue]
    notes: list[str] = []
    #: bible names fixed after translation ({cue, rule, before, after}): post-edited speech
    #: output, restored vocatives (locpipe.localize.terms)
    term_edits: list[dict] = []
    #: lines breaking the series bible ({cue, term, problem, ...}); goal 0
    glossary_violations: list[dict] = []
    #: market adaptation changes and flags ({cue, rule, before, after}; locpipe.localize.adapt)
    adaptations: list[dict] = []
    #: translation-memory lookups for this translation
    tm_hits: int = 0
    tm_misses: int = 0
    #: SeriesBible.version the translation followed ("" without a bible)
    bible_version: str = ""
    #: lines taken from reviewer-approved TM entries of other episodes ({cue, origin, approved_at, episode})
    tm_approved: list[dict] = []
    #: lines a reviewer changed in this episode's review file ({cue, what, before, after, line})
    #: and the file ({file, mtime, sha256}); rejected edits and warnings, each naming file and line
    reviewed: list[dict] = []
    review_file: dict = {}
    review_problems: list[str] = []
    review_warnings: list[str] = []


class SubtitleEvent(Artifact):
    start: float
    end: float
    lines: list[str]
    #: translated cue this event was cut from
    cue_index: int


class SubtitleTrack(Artifact):
    language: str
    events: list[SubtitleEvent]
    srt: str = "subtitles.srt"
    vtt: str = "subtitles.vtt"
    #: reading-limit violations left after segmentation (goal 0)
    violations: list[dict] = []


class DubLine(Artifact):
    cue_index: int
    text: str
    slot_start: float
    slot_end: float
    speech_seconds: float
    stretch: float
    placed_start: float
    placed_end: float
    outcome: Literal["fit", "stretched", "overflow", "skipped"]
    #: why a line was skipped (e.g. text the voice cannot speak)
    note: str = ""
    #: the translation this line replaced with a shorter rendering to fit (stages.condense),
    #: and who rewrote it ("llm", "rules"); "" when spoken as translated
    rewritten_from: str = ""
    rewritten_by: str = ""
    #: speaker label of the source cue (locpipe.stages.speakers) and the voice that spoke it
    speaker: str | None = None
    voice: str = ""


class DubTrack(Artifact):
    language: str
    voice: str
    backend: str
    sample_rate: int
    wav: str = "dub.wav"
    lines: list[DubLine] = []
    #: what a listener hears: "natural", "accented", "low" (robotic fallback) or "none" (no voice)
    quality: str = ""
    #: how the voice was chosen: backends passed over and why (for QC)
    notes: list[str] = []
    #: speaker label -> voice used (locpipe.localize.voices.VoiceStyle.describe); empty: one voice for all
    voices: dict[str, str] = {}
    #: the series cast in this market: characters sharing a voice, pitch-varied voices (QC dub_cast)
    cast_notes: list[str] = []
    #: per-line clip cache of the run that made this dub (locpipe.stages.synthesize.ClipCache):
    #: {"hits": cue indexes spoken before, "misses": cue indexes the TTS spoke now}
    line_cache: dict[str, list[int]] = {}


class MixResult(Artifact):
    """Final programme audio for one market, loudness-normalized."""

    wav: str = "mix.wav"
    method: Literal["original", "duck", "separated"] = "original"
    measured_lufs: float
    measured_true_peak: float
    target_lufs: float
    #: why the original was ducked rather than separated ("" when separated or without a dub)
    background_note: str = ""


class SeparationResult(Artifact):
    """The original episode audio split into vocals and accompaniment (music and effects).

    44.1 kHz stereo 16-bit WAVs of the episode's length, by Spleeter's 2-stem model.
    """

    vocals: str = "vocals.wav"
    accompaniment: str = "accompaniment.wav"
    model: str
    duration: float
    seconds: float


class RenderResult(Artifact):
    video: str = "export.mp4"
    srt: str = "export.srt"
    vtt: str = "export.vtt"
    export_id: str
    watermark_text: str = ""
    ffmpeg_seconds: float = 0.0
    #: forensic watermark payload (hex, the ledger key); "" when the export carries none
    #: (for an A/B copy: the batch payload, the distributor being ``ab_member`` of it)
    forensic_payload: str = ""
    #: A/B copies (locpipe.render.ab): member index in the batch, and the windows
    #: (seconds) rendered for this distributor with its visible text
    ab_member: int | None = None
    distributor_windows: list[tuple[float, float]] = Field(default_factory=list)


class ABBase(Artifact):
    """One market's A/B variants in closed-GOP MPEG-TS segments (``A/00000.ts``...) plus
    the AAC track: what every distributor's copy is assembled from."""

    #: the batch's forensic payload (hex); "" when the profile has no forensic mark (A only)
    batch_payload: str = ""
    fps: str  # exact output rate, e.g. "30000/1001"
    gop: int
    n_frames: int
    n_segments: int
    variants: list[str]
    audio: str
    ass: str
    watermark_text: str = ""
    ffmpeg_seconds: float = 0.0


class QCCheck(Artifact):
    name: str
    passed: bool
    value: int | float | str | None = None
    target: str = ""
    detail: str = ""


class QCReport(Artifact):
    episode: str
    market: str
    passed: bool
    checks: list[QCCheck] = Field(default_factory=list)
    #: figures for the report's charts: "cps" per subtitle event, "dub_stretch" per dubbed
    #: line, "loudness_momentary" (LUFS every 0.5 s of the export)
    series: dict[str, list[float]] = Field(default_factory=dict)


class OnScreenText(Artifact):
    """One burned-in source subtitle while it is on screen (seconds, source timeline)."""

    start: float
    end: float
    #: the recognized line(s), top to bottom joined by a newline: the exact source script
    text: str
    #: mean OCR recognition score of the readings that chose this text (0..1)
    confidence: float = 1.0
    #: where this line's glyphs were: (x, y, w, h) in the same pixels as ``band``
    box: tuple[int, int, int, int] | None = None
    #: the glyph mask over ``box`` (text fill, outline, shadow; a translucent box whole), a
    #: 1-bit PNG at detection scale, base64; the render dilates it and fills it from the picture
    mask: str = ""


class StaticText(Artifact):
    """Chinese text that stays put and never changes (channel logo, series title, "第3集"):
    not dialogue, so not in the transcript; masked only where a market asks for it."""

    text: str
    box: tuple[int, int, int, int]
    mask: str = ""


class SourceSubtitles(Artifact):
    """Where and when the source episode shows burned-in subtitles.

    ``band`` is (x, y, w, h) in pixels of the picture as ffmpeg's autorotating decoder
    delivers it: display orientation, before any scaling (``frame_width`` x
    ``frame_height``); padded to cover outline and shadow. None when nothing was found.
    """

    found: bool
    band: tuple[int, int, int, int] | None = None
    frame_width: int
    frame_height: int
    intervals: list[OnScreenText] = []
    sample_fps: float
    static: list[StaticText] = []
    #: the band came from the operator (``--subtitle-band``), not from discovery
    band_given: bool = False
    backend: str = "rapidocr-onnxruntime"
    model: str = ""
