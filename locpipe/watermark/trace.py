"""Trace a copy: read its forensic mark and look the payload up in the ledger.

Used by ``locpipe trace`` (``locpipe.cli.trace``) and by QC, which traces every marked
export like a leaked copy before it ships. See ``locpipe.cli.trace`` for the report's shape.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from locpipe.errors import InputError

log = logging.getLogger(__name__)


def trace_report(video: Path, ledger: Path, *, fast: bool = False) -> tuple[dict, bool]:
    """Trace ``video`` with the key of ``ledger`` and look the payload up: (report, found).

    ``fast`` (QC of our own export): reference frames only (``locpipe.media.frames.small_luma``).
    """
    from locpipe.watermark.detect import sample_luma, trace_samples
    from locpipe.watermark.keys import key_fingerprint, load_key
    from locpipe.watermark.ledger import Ledger

    key = load_key(ledger, create=False)
    if not video.is_file():
        raise InputError(video, "file does not exist")
    samples = sample_luma(video, fast=fast)
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
