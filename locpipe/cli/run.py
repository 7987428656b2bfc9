"""``locpipe run INPUTS --out OUT --markets ...``: localize episodes into per-market exports.

Parsing and reporting only: the options and their settings come from ``locpipe.cli.options``
(shared with ``watch`` and ``farm submit``), the work from ``locpipe.core.batch``.
"""

from __future__ import annotations

import logging
import time

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
    from locpipe.core.progress import ProgressBoard

    started = time.perf_counter()
    if args.jobs < 1:
        raise ConfigError("--jobs", "", "must be at least 1")
    settings = options.run_settings(args)
    episodes = select_shard(discover_episodes(args.inputs), args.shard)
    if not episodes:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    check_unique_names(episodes)
    codes = [m.code for m in settings.markets]
    log.info("%d episode(s) x %d market(s) -> %s", len(episodes), len(codes), settings.out_dir)
    with ProgressBoard([episode_name(p) for p in episodes], codes, Console(stderr=True)) as board:
        reports = run_batch(episodes, settings, jobs=args.jobs, progress=board)
    return _finish(args, settings, reports, started)


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
