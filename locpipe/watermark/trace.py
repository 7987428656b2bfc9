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

    ``fast`` (QC of our own export): reference frames only (``locpipe.media.frames.small_luma``),
    and only ``ledger``'s key. Otherwise, when ``ledger``'s key finds nothing, each ledger
    archived beside it (``locpipe.watermark.house``) is tried with its own key; and when no key
    finds a mark but a ledger has payloads for this episode (by file name), the report says
    the key may be wrong, instead of a bare "no mark found".
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
    tried = [key_fingerprint(key)]
    if not result.found and not fast:
        for other, other_key in _archived_keys(ledger, tried):
            found = trace_samples(samples, other_key)
            tried.append(key_fingerprint(other_key))
            if found.found:
                log.info("mark found with the key of archived ledger %s", other)
                ledger, key, result = other, other_key, found
                break
    report = {"video": str(video), **result.as_dict(), "ledger": None, "ledger_path": str(ledger),
              "key_fingerprint": key_fingerprint(key), "distributor_determined": False}
    if not result.found:
        report["message"] = "no mark found"
        hint = None if fast else wrong_key_hint(video, ledger, tried)
        if hint:
            report["message"] = f"no mark found; the key may be wrong: {hint}"
            report["key_may_be_wrong"] = True
            log.warning("%s: %s", video, report["message"])
    elif result.payload is not None:
        book = Ledger(ledger) if ledger.is_file() else None
        entry = book.lookup(result.payload) if book else None
        report["ledger"] = asdict(entry) if entry else None
        if entry is None:
            log.warning("payload %s is not in the ledger %s", result.payload.hex, ledger)
        else:
            if entry.state == "void":
                report["message"] = "payload issued to a render that never finished (void in the ledger)"
            batch = book.batch_info(result.payload)
            if batch is None:
                report["distributor_determined"] = True
            else:
                report.update(_ab_report(book, samples, key, result, entry, batch))
    return report, result.found


def _archived_keys(house: Path, tried: list[str]):
    """(ledger, key) of each ledger archived beside ``house`` whose key was not tried yet."""
    from locpipe.errors import LocpipeError
    from locpipe.watermark.house import known_ledgers
    from locpipe.watermark.keys import key_fingerprint, load_key

    seen = set(tried)
    for other in known_ledgers(house)[1:]:
        try:
            other_key = load_key(other, create=False)
        except LocpipeError as exc:
            log.warning("archived ledger %s skipped: %s", other, exc)
            continue
        if key_fingerprint(other_key) not in seen:
            seen.add(key_fingerprint(other_key))
            yield other, other_key


def wrong_key_hint(video: Path, ledger: Path, tried: list[str]) -> str | None:
    """Why a trace that found nothing may have used the wrong key: the ledgers hold payloads
    for the episode this file is named after. None when they hold none (then "no mark found"
    is the whole story: not ours, or destroyed)."""
    from locpipe.watermark.house import known_ledgers
    from locpipe.watermark.ledger import Ledger

    episode = video.stem
    entries = [e for path in known_ledgers(ledger) if path.is_file() for e in Ledger(path).for_episode(episode)]
    if not entries:
        return None
    issued = sorted({e.key_fingerprint for e in entries if e.key_fingerprint})
    other = [fp for fp in issued if fp not in tried]
    detail = (f"they were issued with key {', '.join(other)}, this trace used {', '.join(tried)}" if other
              else f"this trace used key {', '.join(tried)}")
    return (f"the ledger {ledger} has {len(entries)} payload(s) for episode {episode!r} but none was found in "
            f"this copy; {detail}. Check $LOCPIPE_WATERMARK_KEY and --ledger (or the copy was cut too short "
            "or is not one of ours)")


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
