"""``locpipe run INPUTS --out OUT --markets ...``: localize episodes into per-market exports.

Parsing and reporting only: the options and their settings come from ``locpipe.cli.options``
(shared with ``watch`` and ``farm submit``), the work from ``locpipe.core.batch``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console

from locpipe.cli import options
from locpipe.errors import ConfigError
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="localize episodes into per-market exports")
    options.add_run_options(p, shard=True)
    p.add_argument("--jobs", type=int, default=1, help="episodes processed in parallel")


def run(args) -> int:
    """Validate everything, run the batch, then write the manifest, the QC report and a summary."""
    from locpipe.core.batch import check_unique_names, discover_episodes, run_batch, select_shard
    from locpipe.core.names import episode_name
    from locpipe.core.preflight import check_configs
    from locpipe.core.progress import ProgressBoard

    started = time.perf_counter()
    if args.jobs < 1:
        raise ConfigError("--jobs", "", "must be at least 1")
    settings = options.run_settings(args)
    episodes = select_shard(discover_episodes(args.inputs), args.shard)
    if not episodes:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    check_unique_names(episodes, windows=settings.windows_names)
    check_configs(episodes, settings)  # bibles, voices files: before any episode starts
    codes = [m.code for m in settings.markets]
    log.info("%d episode(s) x %d market(s) -> %s", len(episodes), len(codes), settings.out_dir)
    log_ledger(settings)
    names = [episode_name(p, windows=settings.windows_names) for p in episodes]
    reports: list = []
    try:
        with interrupts_raise(), ProgressBoard(names, codes, Console(stderr=True)) as board:
            run_batch(episodes, settings, jobs=args.jobs, progress=board, finished=reports.append)
    except KeyboardInterrupt:
        return _interrupted(settings, reports, len(episodes), started)
    return _finish(args, settings, reports, started)


@contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM (a scheduler's stop, ``kill``) interrupts like Ctrl-C: one path to a clean stop."""
    def stop(_signum, _frame):
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupted(settings, reports: list, episodes: int, started: float) -> int:
    """Ctrl-C or SIGTERM: record what finished, say what did not, exit 130 without a traceback.

    Stages that finished stay in the cache (artifacts are renamed into place whole), so a
    rerun of the same command resumes where this one stopped.
    """
    from locpipe.core.manifest import write_manifest

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the manifest short
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    per_episode = len(settings.markets) * max(1, len(settings.distributors))
    finished = sum(len(r.units) for r in reports)
    if reports:
        write_manifest(settings.out_dir, reports, settings, started)
    log.warning("interrupted: %d units finished, %d not started (rerun the same command to resume from the "
                "cache)", finished, (episodes - len(reports)) * per_episode)
    _exit_now(ExitCode.INTERRUPTED)
    return ExitCode.INTERRUPTED


def _exit_now(code: int) -> None:
    """Leave at once when worker threads are still busy (an ASR thread would otherwise be
    joined at interpreter exit and finish its episode first): flush what was said, then exit."""
    if threading.active_count() > 1 and threading.current_thread() is threading.main_thread():
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def log_ledger(settings) -> None:
    """Say where the forensic ledger and its key are (an anti-piracy team needs both later), and
    point at an older per-output ledger in the work folder that ``locpipe ledger migrate`` would bring in."""
    from locpipe.watermark.house import copy_tree_hint, describe_location

    log.info(describe_location(settings.ledger_path))
    old = copy_tree_hint(settings.work_dir)
    if old is not None and settings.ledger_path is None:
        log.warning("%s is a per-output ledger of an older run: `locpipe ledger migrate %s` moves it into the "
                    "house ledger, so `locpipe trace` finds its marks", old, old)


def _finish(args, settings, reports, started: float) -> int:
    """Manifest, QC report and the summary table; the exit code says whether every unit is ok."""
    from locpipe.cli.qc import write_report
    from locpipe.core.manifest import write_manifest
    from locpipe.core.progress import summary_table

    out = settings.out_dir
    manifest = write_manifest(out, reports, settings, started)
    report = write_report(out, options.config_dir(args))
    stdout = Console()
    if not stdout.is_terminal:  # logs and CI: wide enough that paths and reasons stay readable
        stdout = Console(width=200)
    stdout.print(summary_table(reports))
    units = [u for r in reports for u in r.units]
    failed = [u for u in units if u.status != "ok"]
    log.info("%d/%d units ok in %.1fs; manifest: %s; QC report: %s", len(units) - len(failed), len(units),
             time.perf_counter() - started, manifest, report)
    return ExitCode.UNITS_FAILED if failed else ExitCode.OK
