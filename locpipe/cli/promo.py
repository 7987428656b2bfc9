"""``locpipe promo SERIES_DIR [EPISODE ...] --out OUT --markets us,br``: 15-second ad cuts per market.

Parsing and reporting only: the work is ``locpipe.core.promo.promo_episode``, which reuses
the episode's cached stages (run the episode first; nothing is transcribed, translated or
dubbed twice) and writes ``OUT/<market>/promo/<episode>-promo-<n>.mp4`` plus
``<episode>-promo.json``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from locpipe.cli import options
from locpipe.errors import ConfigError
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("promo", help="15-second promo cuts of each episode's high-conflict moments, per market")
    p.add_argument("series", type=Path, help="series folder (or one episode file)")
    p.add_argument("episodes", nargs="*", help="episode file names or stems inside SERIES_DIR (default: all)")
    options.add_run_options(p, inputs=False)
    p.add_argument("--length", type=float, help="clip length in seconds (default: the market's promo.length, 15)")
    p.add_argument("--count", type=int, help="clips per episode and market (default: the market's promo.count, 3)")


def select_episodes(found: list[Path], wanted: list[str]) -> list[Path]:
    """The episodes named on the command line (by file name or stem); a name matching none is an error."""
    if not wanted:
        return found
    picked = []
    for w in wanted:
        hits = [p for p in found if w in (p.name, p.stem)]
        if not hits:
            raise ConfigError(Path(w), "", f"no episode named {w!r} among {', '.join(p.name for p in found)}")
        picked += [h for h in hits if h not in picked]
    return picked


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from locpipe.core.batch import discover_episodes
    from locpipe.core.promo import promo_episode
    from locpipe.core.resources import Resources

    if args.count is not None and args.count < 1:
        raise ConfigError("--count", "", "must be at least 1")
    settings = options.run_settings(args)
    episodes = select_episodes(discover_episodes([args.series]), args.episodes)
    if not episodes:
        log.error("no episode files found in %s", args.series)
        return ExitCode.CONFIG_ERROR
    resources = Resources()
    table = Table("episode", "market", "clip", "seconds", "score", "QC", "file / note")
    failed = 0
    for path in episodes:
        try:
            docs = promo_episode(path, settings, resources, length=args.length, count=args.count)
        except Exception as exc:  # one bad episode never stops the others
            log.error("%s: %s", path, exc)
            table.add_row(path.name, "*", "", "", "", "failed", str(exc))
            failed += 1
            continue
        for doc in docs:
            if "error" in doc:
                failed += 1
                table.add_row(doc["episode"], doc["market"], "", "", "", "failed", doc["error"])
                continue
            for clip in doc["clips"]:
                table.add_row(doc["episode"], doc["market"], str(clip["number"]), f"{clip['duration']:.2f}",
                              f"{clip['score']:.1f}", "pass" if clip["qc"]["passed"] else "check", clip["video"])
            if not doc["clips"]:
                table.add_row(doc["episode"], doc["market"], "-", "", "", "", "; ".join(doc["notes"]))
    Console(width=200).print(table)
    if (settings.out_dir / "manifest.json").exists():  # the QC report lists the clips beside the exports
        from locpipe.cli.qc import write_report

        log.info("QC report: %s", write_report(settings.out_dir, options.config_dir(args)))
    return ExitCode.UNITS_FAILED if failed else ExitCode.OK
