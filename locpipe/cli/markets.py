"""``locpipe markets``: the configured markets (of ``--config-dir``) as a table."""

from __future__ import annotations

from rich.console import Console

from locpipe.cli import options
from locpipe.exit_codes import ExitCode


def add_parser(sub) -> None:
    sub.add_parser("markets", help="list configured markets")


def run(args) -> int:
    from rich.table import Table

    from locpipe.config import list_market_codes, load_market

    cfg_dir = options.config_dir(args)
    table = Table(title=f"markets in {cfg_dir}")
    for col in ("code", "name", "language", "dub", "profile", "size", "loudness", "translation"):
        table.add_column(col)
    for code in list_market_codes(cfg_dir):
        m = load_market(cfg_dir, code)
        c = m.config
        table.add_row(code, c.name, c.language, _dub(c), m.profile.name, f"{m.profile.width}x{m.profile.height}",
                      f"{c.loudness.integrated} LUFS", ",".join(c.translation.backends))
    Console().print(table)
    return ExitCode.OK


def _dub(c) -> str:
    """The dub column: the voice, the backends chosen by language, or "subs only"."""
    if not c.dub.enabled:
        return "subs only"
    return c.dub.voice or f"auto ({', '.join(c.dub.backend) or 'by language'})"
