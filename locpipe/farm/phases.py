"""What a farm task does, without Celery: lock the unit, skip it if done, run a phase, record.

Delivery is at least once (a unit whose worker dies is handed out again; so is a message
whose acknowledgement was lost in a broker restart); these functions make the *effect*
exactly once:

* a unit runs under its lock on the shared path, so two deliveries never work on it at
  the same time (the second comes back after ``busy_delay``);
* a unit whose record says "ok", whose outputs are there with the published sizes and
  whose source is unchanged is a no-op;
* exports are written temp-then-rename by the pipeline under deterministic names, so a run
  that dies leaves the previous export or none, never a partial file; the record is
  written last (the commit point), and ``commits`` counts the runs that got there.

Phases: ``asr`` (ingest, source_subs, transcribe: once per episode, market-independent),
``tts`` (translate, segment, synthesize, mix for one market) and ``render`` (render, qc,
export, manifest). Each phase reuses the stage cache on the shared work dir, so the next
phase on another machine starts where this one ended.
"""

from __future__ import annotations

import logging
import os
import re
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.context import describe
from locpipe.core.locks import Busy
from locpipe.core.logs import log_context
from locpipe.core.names import distributor_folder
from locpipe.core.resources import Resources
from locpipe.core.store import atomic_write_text
from locpipe.farm.settings import FarmSettings
from locpipe.farm.state import FarmState, UnitRecord, is_complete, now, source_stat, worker_name
from locpipe.farm.units import DrillSpec, EpisodeSpec, UnitSpec, run_settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """How a delivery ended, for the Celery layer to act on.

    kind: ``done`` (phase finished; the chain goes on), ``noop`` (already complete),
    ``retry`` (failed; try again after ``countdown``), ``busy`` (another worker has the
    unit; look again after ``countdown``), ``dead`` (attempts used up; dead-lettered).
    """

    kind: str
    countdown: float = 0.0
    message: str = ""


# --------------------------------------------------------------------------- the protocol


def run_phase(state: FarmState, settings: FarmSettings, rec_id: str, phase: str, init: Callable[[], UnitRecord],
              work: Callable[[UnitRecord, int], str | None], *, complete: Callable[[UnitRecord], bool] = is_complete,
              on_dead: Callable[[UnitRecord, str], None] | None = None, unit: dict | None = None,
              node: str = "") -> Outcome:
    """Run ``work(record, attempt)`` once for ``rec_id`` under its lock; it returns an error or None.

    ``work`` may update the record (outputs, commits); the record is saved after it. The
    attempt is counted before the work starts, so a worker killed mid-phase uses one up and
    a unit that keeps killing its workers is dead-lettered after ``max_attempts``. ``node``
    (the Celery node name) goes into the record: ``farm status`` checks that node's lease to
    tell a running unit from a lost one.
    """
    try:
        with state.lock(rec_id):
            rec = state.load(rec_id) or init()
            if complete(rec):
                rec.noops += 1
                state.save(rec)
                log.info("%s: already complete (%d commit%s): nothing to do", rec_id, rec.commits,
                         "" if rec.commits == 1 else "s")
                return Outcome("noop")
            if rec.status == "failed":  # a stray redelivery of a dead-lettered unit: stop its chain again
                log.info("%s: dead-lettered before (%s); submit it again to retry", rec_id, rec.error)
                return Outcome("dead", message=rec.error)
            attempt = rec.attempts.get(phase, 0) + 1
            rec.attempts[phase] = attempt
            if attempt > settings.max_attempts:  # the earlier attempts died with their workers
                return _dead(state, rec, phase, rec.error or f"worker lost {attempt - 1} times during {phase}",
                             unit, on_dead)
            rec.status, rec.phase, rec.worker, rec.pid, rec.error = "running", phase, worker_name(), os.getpid(), ""
            rec.node, rec.started = node, now()
            state.save(rec)
            log.info("%s: %s attempt %d/%d on %s", rec_id, phase, attempt, settings.max_attempts, rec.worker)
            t0 = time.monotonic()
            try:
                error = work(rec, attempt)
            except Exception as exc:
                error = describe(exc)
                log.debug("%s: %s traceback:\n%s", rec_id, phase, traceback.format_exc())
            rec.phase_seconds[phase] = round(time.monotonic() - t0, 3)
            if error:
                rec.error = error
                if attempt >= settings.max_attempts:
                    return _dead(state, rec, phase, error, unit, on_dead)
                rec.status = "retry"
                state.save(rec)
                wait = settings.backoff(attempt)
                log.warning("%s: %s attempt %d failed (%s); retry in %.0fs", rec_id, phase, attempt, error, wait)
                return Outcome("retry", wait, error)
            if rec.status == "running":
                rec.status = "queued"  # waiting for its next phase
            state.save(rec)
            return Outcome("done")
    except Busy:
        log.info("%s: another worker is on it; looking again in %.0fs", rec_id, settings.busy_delay)
        return Outcome("busy", settings.busy_delay)


def _dead(state: FarmState, rec: UnitRecord, phase: str, error: str, unit: dict | None,
          on_dead: Callable[[UnitRecord, str], None] | None) -> Outcome:
    rec.status, rec.error = "failed", error
    state.save(rec)
    path = state.dead_letter(rec, phase, error, unit or {})
    log.error("%s: dead-lettered after %d %s attempt(s): %s (%s)", rec.unit_id, rec.attempts.get(phase, 0), phase,
              error, path)
    if on_dead:
        on_dead(rec, phase)
    return Outcome("dead", message=error)


def new_record(spec: UnitSpec) -> UnitRecord:
    """A fresh record of a unit (what ``submit`` writes as "queued")."""
    return UnitRecord(unit_id=spec.unit_id, episode=spec.episode, market=spec.market, distributor=spec.distributor,
                      config_hash=spec.config_hash, source=spec.source, role=spec.role)


def episode_record(episode: EpisodeSpec) -> UnitRecord:
    """A fresh record of an episode's shared asr phase."""
    return UnitRecord(unit_id=episode.key, episode=episode.episode, source=episode.source, role="asr")


def _new_record(spec: UnitSpec) -> Callable[[], UnitRecord]:
    return lambda: new_record(spec)


# --------------------------------------------------------------------------- phases


def asr_phase(settings: FarmSettings, episode: EpisodeSpec, resources: Resources | None = None, *,
              node: str = "") -> Outcome:
    """Ingest, burned-in subtitle OCR and transcription, once for all of the episode's markets."""
    if not episode.units:
        return Outcome("noop")
    first = episode.units[0]
    state = FarmState(first.out_dir)

    def work(rec: UnitRecord, _attempt: int) -> str | None:
        from locpipe.core.pipeline import transcribe_episode

        with log_context(episode=episode.episode, stage="asr"):
            transcribe_episode(Path(episode.source), run_settings(first, with_market=False), resources)
        rec.status, rec.phase = "ok", "asr"  # the transcript is in the stage cache for every market
        return None

    def all_done(_rec: UnitRecord) -> bool:
        return all(is_complete(state.load(u.unit_id) or new_record(u)) for u in episode.units)

    def fail_units(rec: UnitRecord, phase: str) -> None:
        """The episode cannot be transcribed: each of its units is dead-lettered with that reason."""
        for spec in (*episode.bases, *episode.units):
            try:
                with state.lock(spec.unit_id):
                    unit_rec = state.load(spec.unit_id) or _new_record(spec)()
                    unit_rec.attempts[phase] = rec.attempts.get(phase, 0)
                    _dead(state, unit_rec, phase, rec.error, spec.model_dump(mode="json"), None)
            except Busy:
                continue

    return run_phase(state, settings, episode.key, "asr", lambda: episode_record(episode), work, complete=all_done,
                     on_dead=fail_units, unit=episode.model_dump(mode="json"), node=node)


def tts_phase(settings: FarmSettings, spec: UnitSpec, resources: Resources | None = None, *,
              node: str = "") -> Outcome:
    """Translate, segment, synthesize and mix one market: the pipeline up to its render stage."""
    state = FarmState(spec.out_dir)

    def work(_rec: UnitRecord, _attempt: int) -> str | None:
        from locpipe.core.pipeline import run_episode

        report = run_episode(Path(spec.source), run_settings(spec, stop_before="render"), resources=resources)
        return _unit_error(report, done="stopped")

    complete = base_complete if spec.role == "ab-base" else is_complete
    return run_phase(state, settings, spec.unit_id, "tts", _new_record(spec), work, complete=complete,
                     unit=spec.model_dump(mode="json"), node=node)


def render_phase(settings: FarmSettings, spec: UnitSpec, resources: Resources | None = None, *,
                 node: str = "") -> Outcome:
    """Render, QC and export one market, then commit the unit and merge the manifest; an A/B
    base unit renders the market's base only (its copies are units of their own)."""
    if spec.role == "ab-base":
        return _base_phase(settings, spec, resources, node)
    state = FarmState(spec.out_dir)
    committed: list = []

    def work(rec: UnitRecord, _attempt: int) -> str | None:
        from dataclasses import asdict

        from locpipe.core.pipeline import run_episode

        run = run_settings(spec)
        folder = Path(spec.out_dir) / spec.market
        if spec.distributor_folder:
            folder = folder / distributor_folder(spec.distributor)
        remove_stale_temporaries(folder, spec.episode, run.markets[0].config.language)
        stat = source_stat(spec.source)
        report = run_episode(Path(spec.source), run, resources=resources)
        error = _unit_error(report)
        unit = report.units[0] if report.units else None
        if unit is not None:
            rec.report = asdict(unit)
            rec.episode_info = {"sha256": report.sha256, "duration": report.duration,
                                "shared_stages": report.shared_stages}
        if error:
            return error
        rec.outputs = dict(unit.outputs)
        rec.output_sizes = {k: Path(v).stat().st_size for k, v in unit.outputs.items()}
        rec.export_id, rec.source_stat = unit.export_id, stat
        rec.commits += 1
        rec.status, rec.phase = "ok", "render"
        committed.append(run)
        return None

    def record_failure(rec: UnitRecord, _phase: str) -> None:
        if rec.report is not None:
            _merge(state, run_settings(spec), rec)

    outcome = run_phase(state, settings, spec.unit_id, "render", _new_record(spec), work, on_dead=record_failure,
                        unit=spec.model_dump(mode="json"), node=node)
    if committed:
        rec = state.load(spec.unit_id)
        if rec is not None:
            _merge(state, committed[0], rec)
    return outcome


def _base_phase(settings: FarmSettings, spec: UnitSpec, resources: Resources | None, node: str) -> Outcome:
    """The market's A/B base (variants A and B, the batch payload), once for all its distributors.

    Done means the base is in the stage cache (``render_ab``): the record has no outputs of
    its own, so "complete" is its status plus the same source; a base whose cache entry was
    removed is rendered again by the first copy unit that needs it (the pipeline does that).
    """
    state = FarmState(spec.out_dir)

    def work(rec: UnitRecord, _attempt: int) -> str | None:
        from locpipe.core.pipeline import run_episode

        stat = source_stat(spec.source)
        report = run_episode(Path(spec.source), run_settings(spec), resources=resources)
        error = _unit_error(report, done="stopped")
        if error:
            return error
        rec.source_stat, rec.status, rec.phase = stat, "ok", "render"
        rec.commits += 1
        return None

    return run_phase(state, settings, spec.unit_id, "render", _new_record(spec), work, complete=base_complete,
                     unit=spec.model_dump(mode="json"), node=node)


def base_complete(rec: UnitRecord) -> bool:
    """An A/B base unit is done when its render phase committed from the same source."""
    same_source = rec.source_stat is None or source_stat(rec.source) == tuple(rec.source_stat)
    return rec.status == "ok" and rec.phase == "render" and same_source


def _merge(state: FarmState, run, rec: UnitRecord) -> None:
    try:
        state.merge_manifest(run, only=[rec])
    except Exception as exc:  # the records are the truth: `farm status --rebuild-manifest` repairs it
        log.warning("manifest.json not updated (%s); `locpipe farm status --rebuild-manifest` rebuilds it", exc)


def _unit_error(report, done: str = "ok") -> str | None:
    """None when the pipeline's one unit reached ``done``, else its error."""
    if not report.units:
        return "the pipeline returned no unit"
    unit = report.units[0]
    if unit.status == done:
        return None
    return f"{unit.failed_stage}: {unit.error}" if unit.failed_stage else unit.error


def remove_stale_temporaries(folder: Path, episode: str, language: str) -> int:
    """Temp files an export of this unit left when its worker died (``.<episode>.<ext>.<pid>.tmp``).

    Exports are ``<episode>.mp4``, ``<episode>.qc.json`` and ``<episode>.<language>.<ext>``;
    the pattern matches exactly those, not another episode whose name starts the same.
    Called under the unit's lock: no live writer of these names exists.
    """
    if not folder.is_dir():
        return 0
    ext = rf"(?:qc\.json|(?:{re.escape(language)}\.)?[A-Za-z0-9]+)"
    pattern = re.compile(rf"^\.{re.escape(episode)}\.{ext}\.\d+\.tmp$")
    removed = 0
    for path in folder.iterdir():
        if pattern.match(path.name) and path.is_file():
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d partial export file(s) in %s", removed, folder)
    return removed


# --------------------------------------------------------------------------- drill


def drill_phase(settings: FarmSettings, spec: DrillSpec, *, node: str = "") -> Outcome:
    """A stand-in unit with the same protocol: for failure drills of the farm itself."""
    state = FarmState(spec.out_dir)
    output = Path(spec.out_dir) / "drill" / f"{spec.unit_id}.txt"

    def work(rec: UnitRecord, attempt: int) -> str | None:
        time.sleep(spec.seconds)
        if attempt <= spec.fail_first:
            raise RuntimeError(f"drill failure on attempt {attempt}")
        atomic_write_text(output, f"{spec.unit_id}\n")
        rec.outputs = {"drill": str(output)}
        rec.output_sizes = {"drill": output.stat().st_size}
        rec.commits += 1
        rec.status, rec.phase = "ok", "drill"
        return None

    init = lambda: UnitRecord(unit_id=spec.unit_id, episode=spec.unit_id, market="drill", role="drill")  # noqa: E731
    return run_phase(state, settings, spec.unit_id, "drill", init, work, unit=spec.model_dump(mode="json"),
                     node=node)
