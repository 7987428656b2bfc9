"""``locpipe status [INBOX]``: queued, running, done and failed work of watch daemons."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rich.console import Console

from locpipe.errors import ConfigError
from locpipe.exit_codes import ExitCode


def add_parser(sub) -> None:
    p = sub.add_parser("status", help="queued, running, done and failed work of watch daemons")
    p.add_argument("inbox", nargs="?", type=Path, default=Path("."), help="the watched INBOX (default .)")
    p.add_argument("--state", type=Path, help="SQLite journal (default INBOX/.locpipe-state.sqlite)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args) -> int:
    from locpipe.daemon.status import collect, render

    state = args.state or args.inbox / ".locpipe-state.sqlite"
    if not state.is_file():
        raise ConfigError(state, "", "no journal here: pass the watched INBOX or --state")
    snap = collect(state)
    if args.json:  # the machine-readable snapshot is the command's output: stdout, not the log
        sys.stdout.write(json.dumps(snap, indent=1, ensure_ascii=False) + "\n")
    else:
        render(snap, Console() if Console().is_terminal else Console(width=200))
    return ExitCode.OK
