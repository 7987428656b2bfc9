"""``locpipe watch INBOX --out OUT --markets ...``: the watch-folder daemon.

The run options (and so the RunSettings every claimed episode runs with) are those of
``locpipe run``, from ``locpipe.cli.options``; the loop is ``locpipe.daemon``.
"""

from __future__ import annotations

import os
from pathlib import Path

from locpipe.cli import options
from locpipe.errors import ConfigError


def add_parser(sub) -> None:
    p = sub.add_parser("watch", help="watch-folder daemon: localize what is dropped into INBOX")
    p.add_argument("inbox", type=Path, help="folder episode files and series folders are dropped into")
    options.add_run_options(p, inputs=False)
    p.add_argument("--state", type=Path, help="SQLite journal (default INBOX/.locpipe-state.sqlite)")
    p.add_argument("--settle", type=float, default=10.0,
                   help="seconds a file's size and mtime must stay unchanged before it counts as arrived")
    p.add_argument("--poll", type=float, default=2.0, help="seconds between inbox scans")
    p.add_argument("--retry-base", type=float, default=30.0,
                   help="back-off before retry N is BASE * 2**(N-1) seconds (3 attempts in all)")
    p.add_argument("--once", action="store_true", help="process what is in INBOX (after settling), then exit")
    p.add_argument("--no-events", action="store_true", help="poll only; do not use filesystem events")


def watch_settings(args):
    """The daemon's settings; its episodes run one at a time, so ASR may use every core."""
    from locpipe.daemon import WatchSettings

    run = options.run_settings(args, asr_threads=os.cpu_count() or 1)
    inbox = args.inbox.resolve()
    if not inbox.is_dir():
        raise ConfigError(args.inbox, "", "not a folder: the inbox must exist")
    if args.settle < 0 or args.poll <= 0 or args.retry_base < 0:
        raise ConfigError("--settle/--poll/--retry-base", "", "must be positive")
    return WatchSettings(inbox=inbox, state=(args.state or inbox / ".locpipe-state.sqlite").resolve(), run=run,
                         settle=args.settle, poll=args.poll, once=args.once, retry_base=args.retry_base,
                         events=not args.no_events, log_level=run.log_level, log_format=run.log_format)


def run(args) -> int:
    from locpipe.cli.run import log_ledger
    from locpipe.daemon import Daemon

    settings = watch_settings(args)
    log_ledger(settings.run)
    return Daemon(settings).run()
