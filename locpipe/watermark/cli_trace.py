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
    from locpipe.watermark.detect import sample_luma, trace_samples
    from locpipe.watermark.keys import key_fingerprint, load_key
    from locpipe.watermark.ledger import Ledger

    key = load_key(ledger, create=False)
    if not video.is_file():
        raise InputError(video, "file does not exist")
    samples = sample_luma(video)
    log.info("sampled %d frames of %s (%dx%d)", len(samples.times), video, samples.width, samples.height)
    result = trace_samples(samples, key)
    report = {"video": str(video), **result.as_dict(), "ledger": None, "ledger_path": str(ledger),
              "key_fingerprint": key_fingerprint(key), "distributor_determined": False}
    if not result.found:
        report["message"] = "no mark found"
    elif result.payload is not None:
        book = Ledger(ledger) if ledger.is_file() else None
        entry = book.lookup(result.payload) if book else None
        report["ledger"] = asdict(entry) if entry else None
        if entry is None:
            log.warning("payload %s is not in the ledger %s", result.payload.hex, ledger)
        else:
            batch = book.batch_info(result.payload)
            if batch is None:
                report["distributor_determined"] = True
            else:
                report.update(_ab_report(book, samples, key, result, entry, batch))
    return report, result.found


def _ab_report(book, samples, key: bytes, result, entry, batch) -> dict:
    """The A/B part of the report: which member of the batch the copy was assembled for."""
    from locpipe.watermark.ab import trace_ab

    members = book.members(result.payload)
    ab = trace_ab(samples, key, result.payload, [m.index for m in members], crop=result.crop, fps=batch.rate,
                  gop=batch.gop, n_frames=batch.n_frames)
    section = {**ab.as_dict(), "batch": asdict(entry), "gop": batch.gop, "fps": batch.fps,
               "n_frames": batch.n_frames}
    out: dict = {"ab": section, "distributor_determined": ab.determined}
    if ab.determined:
        member = next(m for m in members if m.index == ab.index)
        out["ledger"] = {**asdict(member), "payload_hex": entry.payload_hex, "market": entry.market,
                         "episode": entry.episode, "batch_export_id": entry.export_id}
    else:
        section["members"] = [asdict(m) for m in members]
        out["message"] = "A/B batch found, distributor undetermined"
    return out


def run(args) -> int:
    from locpipe.watermark.ledger import ledger_path

    report, found = trace_report(args.video, ledger_path(args.ledger).resolve())
    sys.stdout.write(json.dumps(report, ensure_ascii=False, indent=1) + "\n")
    return ExitCode.OK if found else ExitCode.NOT_FOUND
