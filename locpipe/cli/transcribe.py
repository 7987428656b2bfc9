"""``locpipe transcribe EPISODE``: the source-language cues of one episode as SRT (and JSON).

Only the shared stages run (ingest, OCR, transcription), cached in ``--work``.
``--asr-model`` is the model flag's name here as on ``run``; ``--model`` still works,
hidden, for old scripts.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from locpipe.cli import options
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("transcribe", help="source-language cues of one episode (SRT and JSON)")
    p.add_argument("episode", type=Path)
    p.add_argument("--out", type=Path, help="SRT path (default EPISODE.transcript.zh.srt beside the video)")
    p.add_argument("--json", type=Path, help="also write the cues with words, confidence and source as JSON")
    options.add_asr_options(p)
    p.add_argument("--model", dest="asr_model", help=argparse.SUPPRESS)  # deprecated name of --asr-model
    p.add_argument("--work", type=Path, help="stage cache folder (default: the asset cache)")
    options.add_ocr_options(p, help_no_ocr="ASR only: ignore burned-in subtitles")


def run(args) -> int:
    from locpipe.core.pipeline import transcribe_episode
    from locpipe.core.store import atomic_write_text

    settings = options.transcribe_settings(args, asr=args.asr, asr_model=args.asr_model)
    transcript = transcribe_episode(args.episode, settings)
    srt = args.out or args.episode.with_name(args.episode.stem + ".transcript.zh.srt")
    _write_srt(transcript, srt)
    if args.json:
        atomic_write_text(args.json, transcript.model_dump_json(indent=1))
    log.info("%d cues from %s -> %s", len(transcript.cues), transcript.backend, srt)
    return ExitCode.OK


def _write_srt(transcript, srt: Path) -> None:
    """One subtitle per cue, written beside and renamed: never a half-written SRT."""
    from locpipe.artifacts import SubtitleEvent
    from locpipe.core.store import atomic_write_text
    from locpipe.media.subtitles import srt_string

    events = [SubtitleEvent(start=c.start, end=c.end, lines=[c.text], cue_index=c.index) for c in transcript.cues]
    atomic_write_text(srt, srt_string(events))
