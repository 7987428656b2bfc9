"""Live progress (one row per episode, the stage each market is in) and the summary table."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable

from rich.console import Console
from rich.live import Live
from rich.table import Table

from locpipe.core.pipeline import EpisodeReport

_STYLE = {"start": "yellow", "done": "green", "cached": "cyan", "failed": "bold red"}


class ProgressBoard:
    """Collects (episode, market, stage, status) events and redraws a table on a terminal.

    On a non-terminal (CI, farm logs) nothing is redrawn: the log lines say the same.
    """

    def __init__(self, episodes: Iterable[str], markets: list[str], console: Console):
        self.markets = markets
        self.state: dict[str, dict[str, str]] = {e: {} for e in episodes}
        self.console = console
        self.started = time.perf_counter()
        self._lock = threading.Lock()
        self._live: Live | None = None

    def __call__(self, episode: str, market: str, stage: str, status: str) -> None:
        with self._lock:
            row = self.state.setdefault(episode, {})
            for m in ([market] if market else self.markets):
                row[m] = f"[{_STYLE.get(status, 'white')}]{stage}:{status}[/]"
            if self._live:
                self._live.update(self._table())

    def _table(self) -> Table:
        table = Table(title=f"locpipe: {time.perf_counter() - self.started:.0f}s", expand=False)
        table.add_column("episode")
        for m in self.markets:
            table.add_column(m)
        for ep, row in self.state.items():
            table.add_row(ep, *(row.get(m, "[dim]queued[/]") for m in self.markets))
        return table

    def __enter__(self) -> ProgressBoard:
        if self.console.is_terminal:
            self._live = Live(self._table(), console=self.console, refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self._live:
            self._live.__exit__(*exc)
            self._live = None


def summary_table(reports: list[EpisodeReport]) -> Table:
    table = Table(title="locpipe run summary")
    for col in ("episode", "market", "status", "QC", "seconds", "output / reason"):
        table.add_column(col, overflow="fold")
    for rep in reports:
        for u in rep.units:
            status = "[green]ok[/]" if u.status == "ok" else f"[red]failed at {u.failed_stage}[/]"
            qc = "-" if u.qc_passed is None else ("[green]pass[/]" if u.qc_passed else "[yellow]check[/]")
            detail = u.outputs.get("video", "") if u.status == "ok" else u.error
            market = f"{u.market}/{u.distributor}" if u.distributor else u.market
            table.add_row(u.episode, market, status, qc, f"{u.seconds:.1f}", detail)
    return table
