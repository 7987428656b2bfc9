"""``locpipe trace VIDEO [--ledger PATH]``: read the forensic mark of a (leaked) copy and say whose it was.

Prints one JSON object on stdout: found, the decoded payload, the ledger entry, the
confidence statistic and the false-positive estimate. Exit 0 when a payload is found,
1 (ExitCode.NOT_FOUND) with ``"message": "no mark found"`` when not, 2 when the video
cannot be read or no key is available.

A/B batches (watermark/ab.py): when the decoded payload is an A/B batch of the ledger, the
A/B detector runs on the same samples through the crop window found and the report gets
an ``ab`` section (best member index, score, threshold, null max, candidates...). When it
names a member, ``ledger`` is that member's record (distributor, export id, file, plus the
batch's market and episode) and ``distributor_determined`` is true. When no member clears
the threshold, ``ledger`` is the batch's own entry, ``distributor_determined`` is false,
``message`` says so and ``ab.members`` lists the candidates. The exit code is still 0:
the mark *is* ours and the batch (market, episode) is known; scripts that need a named
distributor check ``distributor_determined`` (always true for a single-export payload
found in the ledger, false when the payload is not in the ledger).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from locpipe.exit_codes import ExitCode

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    tr = subparsers.add_parser("trace", help="read the invisible forensic watermark of a video (JSON)")
    tr.add_argument("video", type=Path, help="a (leaked) copy of an export")
    tr.add_argument("--ledger", type=Path,
                    help="forensic ledger the exports were issued from; its key file sits beside it "
                         "(default: the house ledger of `run`: $LOCPIPE_LEDGER, else `ledger:` in the user config, "
                         "else ~/.local/share/locpipe/); $LOCPIPE_WATERMARK_KEY overrides the key")
    return tr


def run(args) -> int:
    from locpipe.watermark.ledger import ledger_path
    from locpipe.watermark.trace import trace_report

    report, found = trace_report(args.video, ledger_path(args.ledger).resolve())
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return ExitCode.OK if found else ExitCode.NOT_FOUND
