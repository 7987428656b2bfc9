"""The forensic ledger: every payload ever issued, and to whom (SQLite).

A leak is only traceable if the payload read back from a pirate copy leads to a record of
who received that copy. ``issue`` allocates the next serial inside an ``IMMEDIATE``
transaction (SQLite's write lock), so concurrent render processes on one machine never
hand out the same (episode code, serial); a UNIQUE constraint backs that up. The default
rollback journal (not WAL) keeps it usable on a shared network folder, where WAL's shared
memory does not work; writers and ``locpipe trace`` wait for each other's short locks.

Where it lives: ``--ledger`` / ``LOCPIPE_LEDGER``, else beside the work directory, else
the user cache. (One ledger per studio key: a payload means nothing without the key.)
"""

from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from locpipe.errors import LocpipeError
from locpipe.watermark.payload import SERIAL_BITS, Payload, distributor_code, episode_code

log = logging.getLogger(__name__)

LEDGER_NAME = "forensic-ledger.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS payloads (
    payload_hex      TEXT PRIMARY KEY,
    distributor      TEXT NOT NULL,
    distributor_code INTEGER NOT NULL,
    market           TEXT NOT NULL,
    episode          TEXT NOT NULL,
    episode_code     INTEGER NOT NULL,
    serial           INTEGER NOT NULL,
    export_id        TEXT NOT NULL,
    file             TEXT NOT NULL DEFAULT '',
    created_at       TEXT NOT NULL,
    UNIQUE (episode_code, serial)
);
"""


class LedgerError(LocpipeError):
    """The ledger cannot issue or record a payload (full serial space, unreadable file)."""


@dataclass(frozen=True)
class LedgerEntry:
    """One issued payload: what the trace report shows as "who got this copy"."""

    payload_hex: str
    distributor: str
    distributor_code: int
    market: str
    episode: str
    episode_code: int
    serial: int
    export_id: str
    file: str
    created_at: str

    @property
    def payload(self) -> Payload:
        return Payload(self.distributor_code, self.episode_code, self.serial)


def ledger_path(explicit: Path | None = None, *, work_dir: Path | None = None) -> Path:
    """``explicit``, else $LOCPIPE_LEDGER, else WORK_DIR/forensic-ledger.sqlite, else the cache."""
    if explicit:
        return Path(explicit)
    if os.environ.get("LOCPIPE_LEDGER"):
        return Path(os.environ["LOCPIPE_LEDGER"])
    if work_dir is not None:
        return Path(work_dir) / LEDGER_NAME
    from locpipe.assets import cache_dir

    return cache_dir() / LEDGER_NAME


@dataclass(frozen=True)
class Ledger:
    path: Path
    timeout: float = 60.0

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            con = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise LedgerError(f"{self.path}: cannot open the forensic ledger: {exc}") from None
        try:
            con.execute(_SCHEMA)
            yield con
        finally:
            con.close()

    def issue(self, *, distributor: str, market: str, episode: str, export_id: str, file: str = "") -> Payload:
        """Allocate the next serial for this episode's code and record the payload."""
        d, e = distributor_code(distributor), episode_code(episode)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                (serial,) = con.execute("SELECT COALESCE(MAX(serial) + 1, 0) FROM payloads WHERE episode_code = ?",
                                        (e,)).fetchone()
                if serial >= 1 << SERIAL_BITS:
                    raise LedgerError(f"{self.path}: all {1 << SERIAL_BITS} serials of episode code {e} are used")
                payload = Payload(d, e, serial)
                con.execute("INSERT INTO payloads VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (payload.hex, distributor, d, market, episode, e, serial, export_id, file, now))
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        log.info("issued forensic payload %s to %s (%s, %s)", payload.hex, distributor, market, episode)
        return payload

    def record_file(self, payload: Payload, file: str) -> None:
        """Note where the export carrying ``payload`` was written (known after the render)."""
        with self._connect() as con:
            con.execute("UPDATE payloads SET file = ? WHERE payload_hex = ?", (file, payload.hex))

    def withdraw(self, payload: Payload) -> None:
        """Forget a payload whose export was never written (the render failed)."""
        with self._connect() as con:
            con.execute("DELETE FROM payloads WHERE payload_hex = ?", (payload.hex,))

    def entries(self) -> list[LedgerEntry]:
        """Every issued payload, oldest first."""
        with self._connect() as con:
            rows = con.execute("SELECT payload_hex, distributor, distributor_code, market, episode, episode_code, "
                               "serial, export_id, file, created_at FROM payloads "
                               "ORDER BY created_at, rowid").fetchall()
        return [LedgerEntry(*row) for row in rows]

    def lookup(self, payload: Payload) -> LedgerEntry | None:
        with self._connect() as con:
            row = con.execute("SELECT payload_hex, distributor, distributor_code, market, episode, episode_code, "
                              "serial, export_id, file, created_at FROM payloads WHERE payload_hex = ?",
                              (payload.hex,)).fetchone()
        return LedgerEntry(*row) if row else None
