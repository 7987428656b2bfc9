"""``locpipe status``: what the journal says, as rich tables or JSON.

Read-only and safe while daemons run (WAL readers do not block the writer).
"""

from __future__ import annotations

import socket
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from locpipe.core.locks import pid_alive
from locpipe.daemon.journal import Journal

#: a daemon on another host is shown as alive while its heartbeat is younger than this
LEASE = 120.0
_STYLE = {"queued": "yellow", "running": "bold cyan", "retry": "magenta", "done": "green", "failed": "bold red"}


def collect(state: Path) -> dict:
    """The journal's claims, units and daemons plus counts per state."""
    journal = Journal(state)
    try:
        snap = journal.snapshot()
    finally:
        journal.close()
    host = socket.gethostname()
    for d in snap["daemons"]:  # here the pid decides; for other hosts, a recent heartbeat
        here = d["host"] == host
        d["alive"] = d["stopped"] is None and (pid_alive(d["pid"]) if here else time.time() - d["heartbeat"] < LEASE)
    snap["counts"] = {
        "claims": dict(Counter(c["state"] for c in snap["claims"])),
        "units": dict(Counter(u["state"] for u in snap["units"])),
    }
    return snap


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else ""


def _state(value: str) -> str:
    return f"[{_STYLE.get(value, 'white')}]{value}[/]"


def render(snap: dict, console: Console) -> None:
    claims = Table(title="claims")
    for col in ("id", "file", "state", "attempts", "stage", "daemon", "updated", "error"):
        claims.add_column(col, overflow="fold")
    for c in snap["claims"]:
        owner = f"{c['pid']}@{c['host']}" if c["daemon"] else ""
        claims.add_row(str(c["id"]), c["file"], _state(c["state"]), str(c["attempts"]), c["stage"], owner,
                       _when(c["updated"]), c["error"])
    units = Table(title="units")
    for col in ("episode", "market", "state", "stage", "attempts", "updated", "error"):
        units.add_column(col, overflow="fold")
    for u in snap["units"]:
        units.add_row(u["episode"], u["market"], _state(u["state"]), u["stage"], str(u["attempts"]),
                      _when(u["updated"]), u["error"])
    daemons = [d for d in snap["daemons"] if d["alive"]]
    console.print(claims)
    console.print(units)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(snap["counts"]["units"].items())) or "none"
    console.print(f"units: {counts}; live daemons: "
                  + (", ".join(f"{d['pid']}@{d['host']}" for d in daemons) or "none"))
