"""The pipeline for one episode: shared recognition once, then every market, one render run.

The data path (``run_episode``): probe -> recognize (ingest, OCR || ASR, transcript,
speakers) -> per market translate ... mix (``core.market``) -> one shared render of every
market (``core.render_plan``) -> per export QC and publication (``core.export``). Each stage
goes through the artifact store with a key of its inputs, so one transcript serves every
market, two markets in one language share a translation, and a rerun redoes only what changed.

A failure is confined to its unit: a bad episode fails all its markets with the same
reason; a market with no translation backend fails alone while the others finish.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, replace
from pathlib import Path

from locpipe.artifacts import Transcript
from locpipe.config import Market, config_hash
from locpipe.core import export
from locpipe.core.context import EpisodeContext, as_stage
from locpipe.core.logs import log_context
from locpipe.core.market import plan_market
from locpipe.core.names import episode_name, export_id_for
from locpipe.core.promo import promos_for_units
from locpipe.core.recognition import Recognition, probe, recognize
from locpipe.core.render_plan import (
    Prerendered,
    RenderPlan,
    assemble_copy,
    plan_render,
    render_market,
    render_version,
    shared_render,
)
from locpipe.core.reports import EpisodeReport, ProgressFn, UnitReport, failed_episode, stage_rows
from locpipe.core.resources import Resources
from locpipe.core.review import apply_source_review
from locpipe.core.settings import RunSettings
from locpipe.core.store import ArtifactStore, Stored
from locpipe.errors import LocpipeError, StageError

log = logging.getLogger(__name__)


def _quiet(*_event) -> None:
    return None


def run_episode(path: Path, settings: RunSettings, progress: ProgressFn | None = None,
                resources: Resources | None = None) -> EpisodeReport:
    """Every stage of one episode for every market of ``settings`` (see the module docstring)."""
    progress, resources = progress or _quiet, resources or Resources()
    name, ctx = episode_name(path, windows=settings.windows_names), None
    try:
        progress(name, "", "ingest", "start")
        info = probe(path, settings.work_dir)
        ctx = EpisodeContext(path, name, info.sha256, settings, resources, progress)
        rec = recognize(ctx, info)
        with as_stage("review_source"):  # a linguist's corrected transcript (locpipe.core.review)
            rec = apply_source_review(ctx, rec)
    except StageError as err:
        return _unusable(path, name, settings, err, progress, ctx)
    units = [_unit(ctx, market) for market in settings.markets]
    plans = [_prepare(ctx, rec, unit) for unit in units]
    with shared_render(ctx, rec, [p for p in plans if p is not None]) as prerendered:
        reports = [r for unit, p in zip(units, plans) for r in _finish(ctx, rec, unit, p, prerendered)]
    # promo cuts of markets that enable them (core/promo.py): after the exports, never failing them
    promos_for_units(ctx, rec, [(unit.report, p.plan) for unit, p in zip(units, plans) if p is not None])
    return EpisodeReport(episode=name, source=str(path), sha256=info.sha256, duration=info.duration,
                         units=reports, shared_stages=stage_rows(ctx.store.records))


def transcribe_episode(path: Path, settings: RunSettings, resources: Resources | None = None) -> Transcript:
    """Only the shared stages (ingest, OCR, transcribe, speakers): for ``locpipe transcribe`` and the farm."""
    info = probe(path, settings.work_dir)
    name = episode_name(path, windows=settings.windows_names)
    ctx = EpisodeContext(path, name, info.sha256, settings, resources or Resources(), _quiet)
    return recognize(ctx, info).transcript.model


# --------------------------------------------------------------------------- units


@dataclass(frozen=True)
class _Unit:
    """The orchestrator's handle on one market: its report (filled as it goes) and stage records."""

    market: Market
    report: UnitReport
    store: ArtifactStore
    started: float


def _unit(ctx: EpisodeContext, market: Market) -> _Unit:
    report = UnitReport(episode=ctx.name, market=market.code, distributor=ctx.own_distributor or "",
                        config_hash=config_hash(market.config, market.profile),
                        export_id=export_id_for(ctx.sha256, market, ctx.settings.distributor))
    return _Unit(market, report, ArtifactStore(ctx.settings.work_dir), time.perf_counter())


def _prepare(ctx: EpisodeContext, rec: Recognition, unit: _Unit) -> RenderPlan | None:
    """A market's stages up to its mix and its render plan; None when it failed or stops here."""
    try:
        with log_context(episode=ctx.name, market=unit.market.code):
            plan = plan_market(ctx, rec, unit.market, unit.report, unit.store)
            if ctx.settings.stop_before == "render":  # the farm's tts phase: render nodes do the rest
                unit.report.status = "stopped"
                return None
            with as_stage("render"):
                unit.report.backends["render"] = render_version()
                return plan_render(ctx, rec, plan, unit.report.export_id)
    except StageError as err:
        _fail(ctx, unit.market, unit.report, err)
        return None


def _finish(ctx: EpisodeContext, rec: Recognition, unit: _Unit, rp: RenderPlan | None,
            prerendered: dict[str, Prerendered]) -> list[UnitReport]:
    """Render (or adopt the shared render's output), QC and export one market: one unit, or
    one per distributor when the market goes to several (A/B)."""
    reports = [unit.report]
    if rp is not None:
        try:
            with log_context(episode=ctx.name, market=rp.code):
                rendered = render_market(ctx, rec, rp, prerendered.get(rp.code))
                if rp.ab:  # the A/B base: each distributor's copy is assembled from it
                    names = ctx.settings.distributors if ctx.settings.copies is None else ctx.settings.copies
                    reports = [_copy_for(ctx, rec, rp, unit.report, rendered, d) for d in names]
                    if not names:  # the farm's A/B base unit: copies are units of their own
                        unit.report.status, reports = "stopped", [unit.report]
                else:
                    _qc_and_publish(ctx, rec, rp, unit.report, rendered, ctx.own_distributor, unit.store)
        except StageError as err:
            _fail(ctx, unit.market, unit.report, err)
    for report in reports:
        report.stages = stage_rows(unit.store.records) + report.stages
        report.seconds = round(time.perf_counter() - unit.started, 3)
    return reports


def _copy_for(ctx: EpisodeContext, rec: Recognition, rp: RenderPlan, unit: UnitReport, base: Stored,
              distributor: str) -> UnitReport:
    """One distributor's copy of an A/B market: assemble, QC, export (fails alone)."""
    report = replace(unit, distributor=distributor, stages=[], outputs={}, backends=dict(unit.backends),
                     export_id=export_id_for(ctx.sha256, rp.plan.market, distributor))
    store = ArtifactStore(ctx.settings.work_dir)
    try:
        with log_context(episode=ctx.name, market=rp.code, distributor=distributor):
            rendered = assemble_copy(ctx, rec, rp, base, distributor, report.export_id, store)
            _qc_and_publish(ctx, rec, rp, report, rendered, distributor, store)
    except StageError as err:
        _fail(ctx, rp.plan.market, report, err, distributor)
    report.stages = stage_rows(store.records)
    return report


def _qc_and_publish(ctx: EpisodeContext, rec: Recognition, rp: RenderPlan, report: UnitReport, rendered: Stored,
                    distributor: str | None, store: ArtifactStore) -> None:
    qc_report = export.check_export(ctx, rec, rp.plan, rendered, distributor, store).model
    with as_stage("export"):
        report.outputs = export.publish(ctx, rp.plan.market, rp.plan, rendered, qc_report, distributor)
    report.qc_passed, report.status = qc_report.passed, "ok"


# --------------------------------------------------------------------------- failures


def _fail(ctx: EpisodeContext, market: Market, report: UnitReport, err: StageError, distributor: str = "") -> None:
    report.status, report.failed_stage, report.error = "failed", err.stage, err.message
    ctx.progress(ctx.name, market.code, err.stage, "failed")
    where = f"{market.code}/{distributor}" if distributor else market.code
    log.error("%s [%s] %s failed: %s", ctx.name, where, err.stage, err.message,
              extra={"episode": ctx.name, "market": market.code, "stage": err.stage})
    if not isinstance(err.__cause__, LocpipeError | None):
        log.debug("traceback:\n%s", "".join(traceback.format_exception(err.__cause__)))


def _unusable(path: Path, name: str, settings: RunSettings, err: StageError, progress: ProgressFn,
              ctx: EpisodeContext | None) -> EpisodeReport:
    """The episode cannot be used: every market fails with the same reason, naming the file."""
    progress(name, "", err.stage, "failed")
    where = "" if str(path) in err.message else f"{path}: "  # most errors already name the file
    log.error("%s%s", where, err.message, extra={"episode": name, "stage": err.stage})
    return failed_episode(name, str(path), [m.code for m in settings.markets], err.message, err.stage,
                          shared_stages=stage_rows(ctx.store.records) if ctx else [])


__all__ = ["run_episode", "transcribe_episode", "RunSettings", "EpisodeReport", "UnitReport", "episode_name"]
