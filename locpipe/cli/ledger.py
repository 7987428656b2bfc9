"""``locpipe ledger where | migrate OLD_LEDGER``: the house forensic ledger.

``where`` prints the ledger every command uses by default, why, and where its key is.
``migrate`` brings a per-output ledger of an older ``run`` (``OUT/.locpipe-work/forensic-ledger.sqlite``)
and its key into the house ledger (``locpipe.watermark.house``) and prints what it did as JSON.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

from locpipe.exit_codes import ExitCode


def add_parser(sub) -> None:
    p = sub.add_parser("ledger", help="the house forensic ledger: where it is, migrate an older one into it")
    cmds = p.add_subparsers(dest="ledger_command", required=True)
    where = cmds.add_parser("where", help="print the default ledger, why it is the default, and its key")
    where.add_argument("--ledger", type=Path, help="an explicit ledger instead of the house default")
    migrate = cmds.add_parser("migrate", help="move a per-output ledger (and its key) into the house ledger")
    migrate.add_argument("source", type=Path, help="e.g. OUT/.locpipe-work/forensic-ledger.sqlite")
    migrate.add_argument("--to", type=Path, help="house ledger (default: $LOCPIPE_LEDGER, the user config, "
                                                 "else ~/.local/share/locpipe/forensic-ledger.sqlite)")


def run(args) -> int:
    from locpipe.watermark.house import describe_location, migrate

    if args.ledger_command == "where":
        sys.stdout.write(describe_location(args.ledger) + "\n")
        return ExitCode.OK
    done = migrate(args.source, args.to)
    sys.stdout.write(json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in asdict(done).items()}) + "\n")
    return ExitCode.OK
