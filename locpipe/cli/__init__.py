"""Command line: ``locpipe [global options] COMMAND ...``.

One module per command under ``locpipe.cli`` (like celery's ``celery/bin``), each with
``add_parser(sub)`` and ``run(args) -> int``, registered in ``COMMANDS``. This module holds
only the global options, that table and the mapping of errors to exit codes (named in
``locpipe.exit_codes``: 0 all units ok, 3 some units failed, 2 configuration error). The
run options shared by ``run``, ``watch`` and ``farm submit`` are in ``locpipe.cli.options``;
the work is in ``locpipe.core``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

from locpipe import __version__
from locpipe.errors import ConfigError, InputError, LocpipeError
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")

#: command name -> module under locpipe.cli; the order is the order of ``locpipe --help``
COMMANDS: dict[str, str] = {
    "run": "run", "transcribe": "transcribe", "qc": "qc", "watch": "watch", "status": "status",
    "bible": "bible", "voices": "voices", "trace": "trace", "ledger": "ledger", "farm": "farm",
    "markets": "markets", "models": "models", "review": "review", "promo": "promo",
}


def command_module(name: str) -> ModuleType:
    """The module of a command; command modules import their heavy dependencies lazily."""
    return importlib.import_module(f"locpipe.cli.{COMMANDS[name]}")


def _add_global_options(p: argparse.ArgumentParser, *, repeat: bool = False) -> None:
    """The global options; ``repeat``: on a command's parser, so they may follow the command
    (``locpipe run ... --config-dir X``) — no defaults there (SUPPRESS), so a value given
    before the command is kept unless repeated after it."""
    default = (lambda value: argparse.SUPPRESS) if repeat else (lambda value: value)
    if not repeat:
        p.add_argument("--version", action="version", version=f"locpipe {__version__}")
    p.add_argument("--log-level", default=default(os.environ.get("LOCPIPE_LOG_LEVEL", "INFO")),
                   help="DEBUG, INFO, WARNING, ERROR (default $LOCPIPE_LOG_LEVEL or INFO)")
    p.add_argument("--log-format", choices=["text", "json"],
                   default=default(os.environ.get("LOCPIPE_LOG_FORMAT", "text")),
                   help="json: one object per line, for log collectors (default $LOCPIPE_LOG_FORMAT or text)")
    p.add_argument("--config-dir", default=default(None),
                   help="folder with markets/ and profiles/ (default: the bundled configs)")


def _command_parsers(action: argparse._SubParsersAction) -> Iterator[argparse.ArgumentParser]:
    """Every command's parser, nested ones (``farm submit``) included, each once."""
    for parser in dict.fromkeys(action.choices.values()):
        yield parser
        for nested in parser._actions:  # argparse has no public way to list subparsers
            if isinstance(nested, argparse._SubParsersAction):
                yield from _command_parsers(nested)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser: global options, then every command of ``COMMANDS``."""
    p = argparse.ArgumentParser(prog="locpipe", description="Localize and dub Chinese micro-dramas: "
                                                            + " | ".join(COMMANDS))
    _add_global_options(p)
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        command_module(name).add_parser(sub)
    for parser in _command_parsers(sub):
        _add_global_options(parser, repeat=True)
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse, set up logging, run the command; errors become exit codes, not tracebacks."""
    args = build_parser().parse_args(argv)
    from locpipe.core.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        return command_module(args.command).run(args)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except InputError as exc:
        log.error("input error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except LocpipeError as exc:
        log.error("%s", exc)
        return ExitCode.INTERNAL_ERROR
    except KeyboardInterrupt:  # before or outside a batch (``run`` handles its own: manifest, counts)
        log.warning("interrupted")
        return ExitCode.INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
