"""``locpipe qc OUT_DIR``: (re)write the QC report OUT_DIR/qc/index.html.

``write_report`` is also the last step of ``locpipe run``; it never fails a run.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from locpipe.cli import options
from locpipe.errors import ConfigError
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("qc", help="(re)write the QC report OUT_DIR/qc/index.html")
    p.add_argument("out", type=Path, help="an OUT_DIR of `locpipe run`")


def run(args) -> int:
    if not (args.out / "manifest.json").exists():
        raise ConfigError(args.out / "manifest.json", "", "not found: is this an OUT_DIR of `locpipe run`?")
    index = write_report(args.out, options.config_dir(args))
    if index is None:
        return ExitCode.INTERNAL_ERROR
    log.info("QC report: %s", index)
    return ExitCode.OK


def _cps_limits(config_dir: Path, codes) -> dict[str, float]:
    """Reading-speed limit per market of the manifest; a market gone from the config is skipped."""
    from locpipe.config import load_market
    from locpipe.stages.segment import rules_for

    limits = {}
    for code in set(codes):
        try:
            m = load_market(config_dir, code)
        except ConfigError:
            continue
        limits[code] = rules_for(m.config.language, m.config.subtitle_rules).max_chars_per_second
    return limits


def write_report(out: Path, config_dir: Path) -> Path | None:
    """The QC report at the end of a run; a failure here never fails the run."""
    from locpipe.report import build_report

    try:
        codes = [u["market"] for u in json.loads((out / "manifest.json").read_text())["units"]]
        return build_report(out, _cps_limits(config_dir, codes))
    except Exception as exc:
        log.warning("QC report not written: %s", exc)
        return None
