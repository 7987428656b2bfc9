"""``locpipe trace VIDEO [--ledger PATH]``: read the forensic mark of a (leaked) copy and say whose it was.

Prints one JSON object on stdout: found, the decoded payload, the ledger entry, the
confidence statistic and the false-positive estimate. Exit 0 when a payload is found,
1 (ExitCode.NOT_FOUND) with ``"message": "no mark found"`` when not, 2 when the video
cannot be read or no key is available.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from pathlib import Path

from locpipe.errors import InputError
from locpipe.exit_codes import ExitCode

log = logging.getLogger(__name__)


def add_parser(subparsers) -> argparse.ArgumentParser:
    tr = subparsers.add_parser("trace", help="read the invisible forensic watermark of a video (JSON)")
    tr.add_argument("video", type=Path, help="a (leaked) copy of an export")
    tr.add_argument("--ledger", type=Path,
                    help="forensic ledger the exports were issued from; its key file sits beside it "
                         "(default $LOCPIPE_LEDGER, else the user cache); $LOCPIPE_WATERMARK_KEY overrides the key")
    return tr


def trace_report(video: Path, ledger: Path) -> tuple[dict, bool]:
    """Trace ``video`` with the key of ``ledger`` and look the payload up: (report, found)."""
    from locpipe.watermark.detect import trace
    from locpipe.watermark.keys import key_fingerprint, load_key
    from locpipe.watermark.ledger import Ledger

    key = load_key(ledger, create=False)
    if not video.is_file():
        raise InputError(video, "file does not exist")
    result = trace(video, key)
    report = {"video": str(video), **result.as_dict(), "ledger": None, "ledger_path": str(ledger),
              "key_fingerprint": key_fingerprint(key)}
    if not result.found:
        report["message"] = "no mark found"
    elif result.payload is not None:
        entry = Ledger(ledger).lookup(result.payload) if ledger.is_file() else None
        report["ledger"] = asdict(entry) if entry else None
        if entry is None:
            log.warning("payload %s is not in the ledger %s", result.payload.hex, ledger)
    return report, result.found


def run(args) -> int:
    from locpipe.watermark.ledger import ledger_path

    report, found = trace_report(args.video, ledger_path(args.ledger).resolve())
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return ExitCode.OK if found else ExitCode.NOT_FOUND
