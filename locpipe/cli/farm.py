"""``locpipe farm submit | worker | status | drill``: the render farm on Celery + Redis.

Registered in ``locpipe.cli.COMMANDS`` like every command: ``add_parser(sub)`` then ``run(args)``.
``submit`` takes the run options of ``locpipe run`` (``locpipe.cli.options``); a comma list
of distributors queues per market one A/B base unit and one small copy unit per distributor.
``status`` lists every submitted unit (queued, running with its worker, since when and its
lease age, retrying, done, dead-lettered, lost) and requeues what a dead worker held.
Celery is imported only here and in ``locpipe.farm.app``, so ``locpipe run`` works without
the ``farm`` extra; a farm command without it fails naming the extra.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import uuid
from pathlib import Path

from locpipe.cli import options
from locpipe.errors import BackendUnavailable, ConfigError
from locpipe.exit_codes import ExitCode

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    farm = sub.add_parser("farm", help="render farm: queue units on Redis, run Celery workers")
    cmds = farm.add_subparsers(dest="farm_command", required=True)
    broker = argparse.ArgumentParser(add_help=False)
    broker.add_argument("--broker", help="Redis URL (default $LOCPIPE_BROKER_URL), e.g. redis://redis:6379/0")
    broker.add_argument("--visibility-timeout", type=float,
                        help="seconds before an unacknowledged unit is handed to another worker "
                             "(default $LOCPIPE_FARM_VISIBILITY_TIMEOUT or 21600): above the longest render")

    submit = cmds.add_parser("submit", parents=[broker],
                             help="enqueue every episode x market x distributor unit of a series")
    options.add_run_options(submit, shared=True)
    submit.add_argument("--wait", action="store_true", help="wait until every unit is done or dead-lettered")
    submit.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")

    worker = cmds.add_parser("worker", parents=[broker], help="run a Celery worker for some queues")
    worker.add_argument("--queues", default="asr,tts,render",
                        help="comma-separated from asr (GPU nodes), tts, render (CPU nodes)")
    worker.add_argument("--concurrency", type=int, default=1, help="units run in parallel by this worker")
    worker.add_argument("--hostname", help="Celery node name (default locpipe-<queues>-<pid>@<host>)")
    worker.add_argument("--pool", default="prefork", choices=["prefork", "solo"],
                        help="prefork: each unit in a child process (a crash takes the child only)")
    worker.add_argument("--max-attempts", type=int, help="attempts per unit phase before the dead letter (3)")
    worker.add_argument("--retry-base", type=float, help="back-off before retry N is BASE * 2**(N-1) s (30)")

    status = cmds.add_parser("status", parents=[broker], help="units by state, dead letters, queue lengths")
    status.add_argument("--out", required=True, type=Path, help="the shared output folder")
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument("--rebuild-manifest", action="store_true",
                        help="rewrite OUT/manifest.json from every unit record")
    status.add_argument("--no-reap", action="store_true",
                        help="only look: do not requeue the units of workers whose lease expired")

    drill = cmds.add_parser("drill", parents=[broker], help="enqueue stand-in units for failure drills")
    drill.add_argument("--out", required=True, type=Path, help="shared output folder (writes OUT/drill/)")
    drill.add_argument("--units", type=int, default=4)
    drill.add_argument("--seconds", type=float, default=2.0, help="how long each unit works")
    drill.add_argument("--fail-first", type=int, default=0, help="each unit fails its first N attempts")
    drill.add_argument("--queue", default="render", choices=["asr", "tts", "render"])
    drill.add_argument("--prefix", default="", help="unit id prefix (default: a fresh one)")
    drill.add_argument("--wait", action="store_true", help="wait until every unit is done or dead-lettered")
    drill.add_argument("--timeout", type=float, default=0, help="with --wait: give up after this many seconds")


def run(args) -> int:
    try:
        import celery  # noqa: F401
    except ImportError:
        raise BackendUnavailable("the render farm needs Celery and Redis: pip install 'locpipe[farm]'") from None
    commands = {"submit": cmd_submit, "worker": cmd_worker, "status": cmd_status, "drill": cmd_drill}
    return commands[args.farm_command](args)


def _settings(args, **overrides):
    from locpipe.farm.settings import load_settings

    return load_settings(args.broker, visibility_timeout=args.visibility_timeout, **overrides)


def cmd_submit(args) -> int:
    from locpipe.farm.app import make_app, submit_episode
    from locpipe.farm.phases import episode_record, new_record
    from locpipe.farm.state import FarmState
    from locpipe.farm.units import plan_series

    settings = _settings(args)
    # the submitter need not have the ASR workers' extras: the backend is checked on them
    run = options.run_settings(args, check_asr=False)
    out = run.out_dir
    plans = plan_series(args.inputs, run)
    if not plans:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    _warn_local_ledger(run)
    app = make_app(settings)
    state = FarmState(out)
    ids = []
    for plan in plans:
        for rec in [episode_record(plan), *(new_record(u) for u in (*plan.bases, *plan.units))]:
            if state.reset_failed(rec.unit_id):
                log.info("%s: was dead-lettered; queued again with fresh attempts", rec.unit_id)
            state.mark_submitted(rec)  # listed by `farm status` before any worker sees it
        task = submit_episode(app, plan)
        for unit in plan.units:
            ids.append(unit.unit_id)
            _emit({"unit": unit.unit_id, "episode": unit.episode, "market": unit.market, "asr_task": task})
    log.info("%d unit(s) of %d episode(s) queued on %s", len(ids), len(plans), _redact(settings.broker_url))
    return _wait(out, ids, args.timeout) if args.wait else ExitCode.OK


def _warn_local_ledger(run) -> None:
    """The farm's workers must issue into one ledger on a shared path: say which one, and warn
    when it is only this machine's house default."""
    from locpipe.watermark.house import describe_location
    from locpipe.watermark.ledger import ledger_location

    log.info(describe_location(run.ledger_path))
    path, source = ledger_location(run.ledger_path)
    if source == "the house default":
        log.warning("the farm's forensic ledger is this machine's default %s: workers on other machines must see "
                    "it at the same path; set $LOCPIPE_LEDGER or `ledger:` in the user config to a shared path",
                    path)


def cmd_drill(args) -> int:
    from locpipe.farm.app import make_app, submit_drill
    from locpipe.farm.state import FarmState, UnitRecord
    from locpipe.farm.units import DrillSpec

    app = make_app(_settings(args))
    prefix = args.prefix or f"drill-{uuid.uuid4().hex[:6]}"
    out = args.out.resolve()
    state = FarmState(out)
    ids = []
    for i in range(args.units):
        spec = DrillSpec(unit_id=f"{prefix}-{i:03d}", out_dir=str(out), seconds=args.seconds,
                         fail_first=args.fail_first)
        state.mark_submitted(UnitRecord(unit_id=spec.unit_id, episode=spec.unit_id, market="drill", role="drill"))
        _emit({"unit": spec.unit_id, "task": submit_drill(app, spec, args.queue)})
        ids.append(spec.unit_id)
    return _wait(out, ids, args.timeout) if args.wait else ExitCode.OK


def cmd_worker(args) -> int:
    from locpipe.farm.app import make_app
    from locpipe.farm.settings import QUEUES

    queues = [q.strip() for q in args.queues.split(",") if q.strip()]
    unknown = sorted(set(queues) - set(QUEUES))
    if unknown or not queues:
        raise ConfigError("--queues", "", f"unknown queue(s) {unknown or queues}: choose from {', '.join(QUEUES)}")
    if args.concurrency < 1:
        raise ConfigError("--concurrency", "", "must be at least 1")
    settings = _settings(args, max_attempts=args.max_attempts, retry_base=args.retry_base)
    app = make_app(settings)
    name = args.hostname or f"locpipe-{'-'.join(queues)}-{os.getpid()}@%h"
    level = logging.getLevelName(logging.getLogger().level)
    log.info("worker %s on %s: queues %s, concurrency %d, visibility timeout %.0fs", name,
             _redact(settings.broker_url), ",".join(queues), args.concurrency, settings.visibility_timeout)
    app.worker_main(["worker", "--queues", ",".join(queues), "--concurrency", str(args.concurrency),
                     "--hostname", name, "--pool", args.pool, "--loglevel", level,
                     "--without-gossip", "--without-mingle"])
    return ExitCode.OK


def cmd_status(args) -> int:
    from locpipe.farm.state import FarmState
    from locpipe.farm.status import snapshot

    state = FarmState(args.out.resolve())
    if args.rebuild_manifest:
        _rebuild_manifest(state, [r for r in state.records() if r.role != "asr"])
    try:
        settings = _settings(args)
    except ConfigError as exc:  # no broker configured: the records alone still say a lot
        log.info("%s: units listed from their records only", exc)
        settings = None
    client = _broker_client(settings) if settings else None
    snap = snapshot(state, client, reap=not args.no_reap, lease_ttl=settings.lease_ttl if settings else 30.0)
    if args.json:
        sys.stdout.write(json.dumps(snap.model_dump(mode="json"), indent=1, ensure_ascii=False) + "\n")
        return ExitCode.OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"farm units in {state.out_dir}")
    for col in ("unit", "role", "state", "phase", "worker", "since", "lease age", "attempts", "commits", "error"):
        table.add_column(col)
    for u in snap.units:
        table.add_row(u.unit, u.role, u.state, u.phase, u.node or u.worker, u.since,
                      "" if u.lease_age is None else f"{u.lease_age:.0f}s",
                      ",".join(f"{k}:{v}" for k, v in u.attempts.items()), str(u.commits), u.error[:80])
    console = Console() if Console().is_terminal else Console(width=220)
    console.print(table)
    console.print(f"states: {snap.counts or 'none'}; dead letters: {len(snap.dead)}; workers alive: "
                  f"{', '.join(snap.workers) if snap.workers is not None else 'broker not reachable'}; queued "
                  f"messages: {snap.queues if snap.queues is not None else 'broker not reachable'}"
                  + (f"; requeued now: {', '.join(r.unit or r.tag for r in snap.requeued)}" if snap.requeued else ""))
    return ExitCode.OK


def _broker_client(settings):
    """A Redis client when the broker answers, else None (status still lists the records)."""
    try:
        from locpipe.farm.lease import client_for

        client = client_for(settings.broker_url)
        client.ping()
        return client
    except Exception as exc:
        log.info("broker not reachable (%s): units listed from their records only", exc)
        return None


def _rebuild_manifest(state, records) -> None:
    if not any(r.report for r in records):
        log.warning("no finished unit in %s: manifest.json left as it is", state.root)
        return
    from locpipe.core.settings import build_settings

    # no market settings here: the manifest's last_run section says only where it came from
    path = state.merge_manifest(build_settings(out_dir=state.out_dir, work_dir=state.out_dir, distributors=("farm",)))
    log.info("manifest rebuilt from %d unit record(s): %s", len(records), path)


def _wait(out: Path, ids: list[str], timeout: float) -> int:
    """Poll the unit records until every unit is ok or failed: 0 all ok, 3 some dead-lettered."""
    from locpipe.farm.state import FarmState, is_complete

    state = FarmState(out)
    deadline = time.monotonic() + timeout if timeout > 0 else None
    while True:
        recs = {i: state.load(i) for i in ids}
        final = {i: r.status for i, r in recs.items()
                 if r is not None and (r.status == "failed" or (r.status == "ok" and is_complete(r)))}
        if len(final) == len(ids):
            failed = sorted(i for i, s in final.items() if s == "failed")
            log.info("%d/%d unit(s) ok%s", len(ids) - len(failed), len(ids),
                     f"; dead-lettered: {', '.join(failed)}" if failed else "")
            return ExitCode.UNITS_FAILED if failed else ExitCode.OK
        if deadline is not None and time.monotonic() > deadline:
            log.error("timed out: %d/%d unit(s) finished", len(final), len(ids))
            return ExitCode.INTERNAL_ERROR
        time.sleep(1.0)


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _redact(url: str) -> str:
    """A broker URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.rsplit('@', 1)[1]}"
    return url
