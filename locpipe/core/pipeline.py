"""The pipeline for one episode: shared stages once, then every market.

Stage order: ingest -> transcribe -> (per market) translate -> segment -> synthesize ->
mix -> render -> qc -> export. Each stage goes through the artifact store with a key of its
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
from dataclasses import dataclass, field
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
from locpipe.media.probe import probe
from locpipe.stages import ingest, qc, segment, transcribe, translate

log = logging.getLogger(__name__)

#: bump a stage's version when its code changes what it produces: invalidates its cache
STAGE_VERSIONS = {"ingest": 1, "source_subs": 1, "transcribe": 2, "translate": 2, "segment": 1, "synthesize": 1, "mix": 1,
                  "render": 1, "qc": 2}
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


@dataclass
class UnitReport:
    """One (episode, market) unit, as written to the manifest."""

    episode: str
    market: str
    status: str = "pending"  # ok | failed
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
        self._tts: dict[str, object] = {}
        self._bible = None
        self._bible_loaded = False

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
            onscreen, ocr_key = self._source_subs(store, info)
            stage = "transcribe"
            tr, _tr_dir, tr_key = self._transcribe(store, ing, ing_dir, ing_key, onscreen, ocr_key)
        except Exception as exc:  # the episode is unusable: every market fails with the same reason
            self.progress(self.name, "", stage, "failed")
            msg = _describe(exc)
            log.error("%s: %s", self.path, msg, extra={"episode": self.name, "stage": stage})
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
            self._asr = get_asr_backend(self.settings.asr_backend, self.settings.asr)
        return self._asr

    def _source_subs(self, store, info: MediaInfo) -> tuple[SourceSubtitles | None, str | None]:
        """Burned-in source subtitles, or (None, None) when OCR is off or cannot run here."""
        if not self.settings.ocr:
            return None, None
        try:
            from locpipe.stages import source_subs
        except ImportError as exc:  # OCR is an optional capability: the episode goes on without it
            log.warning("burned-in subtitle OCR unavailable (%s): pip install rapidocr-onnxruntime", exc)
            return None, None
        opts = source_subs.SourceSubsOptions(threads=self.settings.asr.threads)
        parts = {"sha256": info.sha256, "options": opts.model_dump(exclude={"threads"}),
                 "backend": source_subs.BACKEND, "model": source_subs.MODEL}
        model, _d, key = self._stage(store, "", "source_subs", parts, SourceSubtitles,
                                     lambda d: source_subs.detect_source_subtitles(info, opts))
        return model, key

    def _transcribe(self, store, ing: IngestResult, ing_dir: Path, ing_key: str,
                    onscreen: SourceSubtitles | None, ocr_key: str | None):
        backend = self._asr_backend()
        sidecar = transcribe.find_sidecar(self.path)
        parts = {"ingest": ing_key, "backend": backend.name, "version": backend.version,
                 "options": self.settings.asr.__dict__, "sidecar": transcribe.sidecar_digest(self.path),
                 "source_subs": ocr_key}
        return self._stage(store, "", "transcribe", parts, Transcript,
                           lambda d: transcribe.transcribe_audio(ing_dir / ing.audio_16k, backend, sidecar=sidecar,
                                                                 onscreen=onscreen))

    def transcript(self) -> Transcript:
        """Only the shared stages (ingest, OCR, transcribe): for `locpipe transcribe`."""
        store = ArtifactStore(self.settings.work_dir)
        info = self._probe(store)
        self._sha = info.sha256
        ing, ing_dir, ing_key = self._stage(store, "", "ingest", {"sha256": info.sha256}, IngestResult,
                                            lambda d: ingest.extract_audio(info, d))
        onscreen, ocr_key = self._source_subs(store, info)
        return self._transcribe(store, ing, ing_dir, ing_key, onscreen, ocr_key)[0]

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
                result, render_dir, render_key = self._render(store, market, info, track, track_dir, seg_key,
                                                              mix, mix_dir, mix_key, unit, shared["source_subs"])
                stage = "qc"
                report, _qc_dir, _ = self._stage(
                    store, market.code, "qc", {"render": render_key}, QCReport,
                    lambda d: qc.run_qc(episode=self.name, market=market, export_path=render_dir / result.video,
                                        source=info, transcript=shared["transcribe"][0], translation=translation,
                                        track=track, dub=dub))
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
        from locpipe.backends.tts.base import parse_voice_spec
        from locpipe.stages.synthesize import synthesize_dub

        tts, _voice = parse_voice_spec(market.config.dub.voice)
        tts = self._tts.setdefault(tts.name, tts)  # one loaded voice model per job
        unit.backends["synthesize"] = f"{tts.name} {tts.version}"
        parts = {"translation": tl_key, "dub": market.config.dub.model_dump(), "tts": tts.version,
                 "duration": info.duration}
        return self._stage(store, market.code, "synthesize", parts, DubTrack,
                           lambda d: synthesize_dub(translation, market, info.duration, d, tts))

    def _mix(self, store, market: Market, info: MediaInfo, dub, dub_dir, dub_key, shared: dict):
        from locpipe.stages.mix import mix_audio

        parts = {"source": info.sha256, "dub": dub_key, "loudness": market.config.loudness.model_dump(),
                 "duck_db": market.config.dub.duck_db if dub else None, "duration": info.duration}
        return self._stage(store, market.code, "mix", parts, MixResult,
                           lambda d: mix_audio(Path(info.path), dub, dub_dir, market, info.duration, d))

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
        return self._stage(store, market.code, "render", parts, RenderResult,
                           lambda d: render_export(info, mix_dir / mix.wav, track, track_dir, market,
                                                   episode=self.name, distributor=self.settings.distributor,
                                                   export_id=unit.export_id, out_dir=d, source_subs=source_subs[0]))

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
            "qc": folder / f"{self.name}.qc.json",
        }
        atomic_copy(render_dir / result.video, outputs["video"])
        atomic_copy(render_dir / result.srt, outputs["srt"])
        atomic_copy(render_dir / result.vtt, outputs["vtt"])
        atomic_write_text(outputs["qc"], report.model_dump_json(indent=1))
        self.progress(self.name, market.code, "export", "done")
        return {k: str(v) for k, v in outputs.items()}


def _describe(exc: BaseException) -> str:
    if isinstance(exc, LocpipeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def run_episode(path: Path, settings: RunSettings, progress: ProgressFn | None = None) -> EpisodeReport:
    """Entry point for executors (in-process or a worker process)."""
    return EpisodeJob(path, settings, progress).run()


def pipeline_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"locpipe": __version__}
    for pkg in ("faster-whisper", "ctranslate2", "piper-tts", "imageio-ffmpeg", "deep-translator", "pysubs2"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


__all__ = ["RunSettings", "EpisodeReport", "UnitReport", "run_episode", "episode_name", "probe"]
