"""Shared recognition: once per episode, for every market.

ingest -> (burned-in subtitle OCR || speech recognition) -> transcript -> speaker labels,
returned as one frozen ``Recognition``. Speech recognition needs no OCR result (only the
fusion in the transcribe stage does), so when OCR has to run, recognition runs in a thread
beside it with the cores split between them.
"""

from __future__ import annotations

import contextvars
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from locpipe.artifacts import IngestResult, MediaInfo, SourceSubtitles, SpeakerLabels, Transcript
from locpipe.backends.asr.base import ASRBackend, ASROptions
from locpipe.core.context import EpisodeContext, as_stage, describe
from locpipe.core.store import Stored
from locpipe.stages import ingest, transcribe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recognition:
    """What every market of the episode starts from."""

    info: MediaInfo
    ingest: Stored[IngestResult]
    #: burned-in source subtitles; None when OCR is off or cannot run here
    source_subs: Stored[SourceSubtitles] | None
    #: the transcript with each cue's speaker label set
    transcript: Stored[Transcript]
    #: None when labelling is off; when it failed, every cue is S1 and the labels' notes say why
    speakers: SpeakerLabels | None
    #: the speakers stage key (None when labelling is off or failed)
    speakers_key: str | None

    @property
    def audio_16k(self) -> Path:
        return self.ingest.file(self.ingest.model.audio_16k)

    @property
    def source_subs_key(self) -> str | None:
        return self.source_subs.key if self.source_subs else None

    @property
    def onscreen(self) -> SourceSubtitles | None:
        return self.source_subs.model if self.source_subs else None


def probe(path: Path, work_dir: Path) -> MediaInfo:
    """The episode's media facts; any problem is an ingest failure naming the file."""
    with as_stage("ingest"):
        return ingest.probe_cached(path, work_dir / "probe")


def recognize(ctx: EpisodeContext, info: MediaInfo) -> Recognition:
    """The shared stages of ``ctx``'s episode (see the module docstring)."""
    ing = ctx.stage("", "ingest", {"sha256": info.sha256}, IngestResult, lambda d: ingest.extract_audio(info, d))
    audio = ing.file(ing.model.audio_16k)
    with as_stage("transcribe"):  # an engine that cannot be made here fails the episode's units, not the run
        asr = ctx.resources.asr(ctx.settings.asr_backend, replace(ctx.settings.asr, threads=split_threads(ctx)[0]))
    early: list[Future] = []
    with as_stage("source_subs"):
        onscreen = read_source_subs(ctx, info, lambda: early.append(start_asr(asr, audio)))
    with as_stage("transcribe"):
        transcript = transcribe_episode(ctx, ing, asr, onscreen, early[0] if early else None)
    labels, labels_key = label_speakers(ctx, ing, transcript)
    if labels is not None:
        from locpipe.stages.speakers import apply_labels

        transcript = replace(transcript, model=apply_labels(transcript.model, labels))
    return Recognition(info=info, ingest=ing, source_subs=onscreen, transcript=transcript, speakers=labels,
                       speakers_key=labels_key)


def split_threads(ctx: EpisodeContext) -> tuple[int, int]:
    """(ASR, OCR) threads: with OCR on, the cores are split so both can run at once.

    Measured on the sample (2 cores): OCR then ASR at 2 threads each, RTF 0.18; both at
    once at 1 thread each, RTF 0.11 (oversubscribed threads mostly wait on each other).
    """
    total = max(1, ctx.settings.asr.threads)
    if not ctx.settings.ocr:
        return total, total
    return max(1, total - total // 2), max(1, total // 2)


def start_asr(backend: ASRBackend, audio_16k: Path) -> Future:
    """Speech recognition of ``audio_16k`` in its own thread (ends with its one task)."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="asr")
    future = pool.submit(contextvars.copy_context().run, backend.transcribe, audio_16k)  # keeps the log context
    pool.shutdown(wait=False)
    return future


def read_source_subs(ctx: EpisodeContext, info: MediaInfo, on_run) -> Stored[SourceSubtitles] | None:
    """Burned-in source subtitles, or None when OCR is off or cannot run here.

    ``on_run`` is called when OCR really has to run (not cached) and no sidecar script makes
    ASR text unnecessary: the caller starts speech recognition beside it.
    """
    if not ctx.settings.ocr:
        return None
    try:
        from locpipe.stages import source_subs
    except ImportError as exc:  # OCR is an optional capability: the episode goes on without it
        log.warning("burned-in subtitle OCR unavailable (%s): pip install rapidocr-onnxruntime", exc)
        return None
    opts = source_subs.SourceSubsOptions(threads=split_threads(ctx)[1], band_override=given_band(ctx))
    parts = {"sha256": info.sha256, "options": opts.model_dump(exclude={"threads"}),
             "backend": source_subs.BACKEND, "model": source_subs.MODEL}

    def make(_d: Path) -> SourceSubtitles:
        if transcribe.find_sidecar(ctx.path) is None:  # a sidecar script needs no ASR text
            on_run()
        return source_subs.detect_source_subtitles(info, opts, ocr=ctx.resources.ocr(opts.threads))

    return ctx.stage("", "source_subs", parts, SourceSubtitles, make)


#: per-series settings beside the episodes (locpipe.config.models.SeriesSettings)
SERIES_FILE = "series.yaml"


def given_band(ctx: EpisodeContext) -> tuple[float, float] | None:
    """The operator's subtitle band: ``--subtitle-band``, else ``subtitle_band`` in the
    series folder's series.yaml, else None (detected). A bad file is a configuration error
    naming it."""
    if ctx.settings.subtitle_band:
        return ctx.settings.subtitle_band
    path = ctx.path.resolve().parent / SERIES_FILE
    if not path.is_file():
        return None
    from locpipe.config import read_yaml, validate
    from locpipe.config.models import SeriesSettings

    settings = validate(SeriesSettings, path, read_yaml(path))
    return settings.subtitle_band  # type: ignore[attr-defined]


def asr_key_options(opts: ASROptions) -> dict:
    """ASR options that change the transcript: thread count does not (``run --jobs 1`` and
    ``watch`` with every core must share one cached transcription)."""
    return {k: v for k, v in vars(opts).items() if k != "threads"}


def transcribe_episode(ctx: EpisodeContext, ing: Stored[IngestResult], backend: ASRBackend,
                       onscreen: Stored[SourceSubtitles] | None, early: Future | None) -> Stored[Transcript]:
    sidecar = transcribe.find_sidecar(ctx.path)
    parts = {"ingest": ing.key, "backend": backend.name, "version": backend.version,
             "options": asr_key_options(ctx.settings.asr), "sidecar": transcribe.sidecar_digest(ctx.path),
             "source_subs": onscreen.key if onscreen else None}
    return ctx.stage("", "transcribe", parts, Transcript,
                     lambda d: transcribe.transcribe_audio(ing.file(ing.model.audio_16k), backend, sidecar=sidecar,
                                                           onscreen=onscreen.model if onscreen else None,
                                                           recognized=early.result() if early else None))


def label_speakers(ctx: EpisodeContext, ing: Stored[IngestResult],
                   transcript: Stored[Transcript]) -> tuple[SpeakerLabels | None, str | None]:
    """(labels, stage key); (None, None) when labelling is off. Never fails the episode: a
    broken or missing speaker model gives every cue S1, with the reason in the labels."""
    from locpipe.stages import speakers

    if not ctx.settings.speakers:
        return None, None
    try:
        opts = speakers.SpeakerOptions()
        version = speakers.model_version()
        store_path = ctx.series_state / speakers.STORE_FILE if version else None
        parts = {"transcript": transcript.key, "ingest": ing.key, "options": opts.__dict__,
                 "model": version or "missing",
                 "store": [str(store_path), speakers.ensure_store(store_path)] if store_path else None}
        threads = ctx.settings.asr.threads

        def make(_d: Path) -> SpeakerLabels:
            try:
                encoder = ctx.resources.speaker_encoder(threads)
            except speakers.SpeakersUnavailable:
                encoder = None  # label_speakers falls back to S1 and says why
            return speakers.label_speakers(transcript.model, ing.file(ing.model.audio_16k), store_path, ctx.name,
                                           opts, encoder=encoder, threads=threads)

        stored = ctx.stage("", "speakers", parts, SpeakerLabels, make)
        return stored.model, stored.key
    except Exception as exc:  # speaker labels are an aid: the episode goes on without them
        log.warning("speaker labels failed (%s): every cue labelled %s", describe(exc), speakers.FALLBACK_LABEL)
        return speakers.fallback_labels(transcript.model, f"speaker labelling failed: {describe(exc)}"), None
