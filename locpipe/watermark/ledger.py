"""The forensic ledger: every payload ever issued, and to whom (SQLite).

A leak is only traceable if the payload read back from a pirate copy leads to a record of
who received that copy. ``issue`` allocates the next serial inside an ``IMMEDIATE``
transaction (SQLite's write lock), so concurrent render processes on one machine never
hand out the same (episode code, serial); a UNIQUE constraint backs that up. The default
rollback journal (not WAL) keeps it usable on a shared network folder, where WAL's shared
memory does not work; writers and ``locpipe trace`` wait for each other's short locks.

Where it lives: one ledger per house (``ledger_location``): ``--ledger``, else
``$LOCPIPE_LEDGER``, else ``ledger:`` in the user config file (``locpipe.config.user``), else
``$XDG_DATA_HOME/locpipe/forensic-ledger.sqlite``. Never inside an output's work folder: an
anti-piracy team traces a leak months later without knowing which run made it, so ``run``,
``watch``, the farm and ``trace`` must all default to the same place. (One ledger per studio
key: a payload means nothing without the key, which sits beside the ledger.)

States: a payload is ``pending`` from ``issue`` until its render finished (``finalize``,
called when the render stage has its artifact), then ``final``. A render killed (SIGKILL,
power cut) never finalizes: the next ``issue`` for the same export (episode, market,
distributor, export id) takes the pending payload over instead of allocating a second
serial, and pending payloads whose process on this host is gone are marked ``void``, so the
ledger never shows a dead render's payload beside the real one. Rows written before states
existed are ``final``.

A/B batches (watermark/ab.py): ``issue_batch`` records one *batch* payload per (market,
episode) as an ordinary payloads row (distributor ``ab-batch:<market>``), its timing in
``ab_batches`` (the detector needs the GOP length and the episode length) and one row per
member distributor in ``ab_members`` (the member index picks its keyed A/B sequence).
``add_members`` appends distributors to an existing batch later (new indices: variants A
and B are already encoded, a new copy is only a new assembly). Both tables are created
IF NOT EXISTS, so ledgers written before A/B mode keep working.
"""

from __future__ import annotations

import logging
import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

from locpipe.errors import LocpipeError
from locpipe.watermark.payload import SERIAL_BITS, Payload, distributor_code, episode_code

log = logging.getLogger(__name__)

LEDGER_NAME = "forensic-ledger.sqlite"
LEDGER_ENV = "LOCPIPE_LEDGER"
#: payload states (see the module docstring)
PENDING, FINAL, VOID = "pending", "final", "void"
#: columns added after the first schema (ALTER TABLE on first use: old ledgers keep working)
_ADDED_COLUMNS = {"state": f"TEXT NOT NULL DEFAULT '{FINAL}'", "owner": "TEXT NOT NULL DEFAULT ''",
                  "key_fingerprint": "TEXT NOT NULL DEFAULT ''"}
#: lowest next serial per episode code: set when an older ledger is archived into this one,
#: so new payloads never repeat a serial that ledger gave out (``locpipe.watermark.house``)
_FLOOR_SCHEMA = """CREATE TABLE IF NOT EXISTS serial_floor (
    episode_code INTEGER PRIMARY KEY,
    next_serial  INTEGER NOT NULL
)"""
_ENTRY_COLUMNS = ("payload_hex, distributor, distributor_code, market, episode, episode_code, serial, export_id, "
                  "file, created_at, state, key_fingerprint")
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


_AB_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS ab_batches (
    payload_hex  TEXT PRIMARY KEY,
    fps          TEXT NOT NULL,
    gop          INTEGER NOT NULL,
    n_frames     INTEGER NOT NULL,
    ab_version   INTEGER NOT NULL,
    created_at   TEXT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS ab_members (
    payload_hex  TEXT NOT NULL,
    idx          INTEGER NOT NULL,
    distributor  TEXT NOT NULL,
    export_id    TEXT NOT NULL,
    file         TEXT NOT NULL DEFAULT '',
    created_at   TEXT NOT NULL,
    PRIMARY KEY (payload_hex, idx)
)""",
)
#: the payloads-row distributor of an A/B batch is this prefix plus the market
BATCH_DISTRIBUTOR_PREFIX = "ab-batch:"


def batch_distributor(market: str) -> str:
    """The distributor name (and, hashed, the payload's distributor code) of A/B batches."""
    return BATCH_DISTRIBUTOR_PREFIX + market


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def owner_name() -> str:
    """``host:pid`` of this process: whose render a pending payload belongs to."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_gone(owner: str) -> bool:
    """True when ``owner`` is a process of this host that no longer runs (another host's
    processes cannot be checked from here: they are never declared gone)."""
    from locpipe.core.locks import pid_alive

    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    return not pid_alive(int(pid))


def _key_fingerprint(ledger: Path) -> str:
    """Fingerprint of the key marks of this ledger are made with ('' when none is there yet):
    recorded per payload, so a trace with another key can say the key may be wrong."""
    from locpipe.watermark.keys import key_fingerprint, load_key

    try:
        return key_fingerprint(load_key(ledger, create=False))
    except LocpipeError:
        return ""


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
    #: pending (its render runs or died), final (rendered), void (its render never finished)
    state: str = FINAL
    key_fingerprint: str = ""

    @property
    def payload(self) -> Payload:
        return Payload(self.distributor_code, self.episode_code, self.serial)


@dataclass(frozen=True)
class ABBatch:
    """Timing of an A/B batch as rendered: what the A/B detector needs besides the key."""

    payload_hex: str
    fps: str  # exact rate as a ratio, e.g. "30000/1001"
    gop: int  # frames per GOP-segment
    n_frames: int  # frames of the episode
    ab_version: int
    created_at: str

    @property
    def rate(self) -> Fraction:
        return Fraction(self.fps)

    @property
    def n_segments(self) -> int:
        return -(-self.n_frames // self.gop)


@dataclass(frozen=True)
class ABMember:
    """One distributor's copy of an A/B batch: segment s from A or B per its sequence ``index``."""

    payload_hex: str
    index: int
    distributor: str
    export_id: str
    file: str
    created_at: str


def ledger_location(explicit: Path | None = None) -> tuple[Path, str]:
    """The house ledger and what chose it: ``explicit`` (``--ledger``), else $LOCPIPE_LEDGER,
    else ``ledger:`` in the user config file, else ``$XDG_DATA_HOME/locpipe/forensic-ledger.sqlite``."""
    if explicit:
        return Path(explicit).expanduser(), "--ledger"
    if os.environ.get(LEDGER_ENV):
        return Path(os.environ[LEDGER_ENV]).expanduser(), f"${LEDGER_ENV}"
    from locpipe.config.user import load_user_config, user_config_path

    configured = load_user_config().ledger
    if configured is not None:
        return configured, f"ledger: in {user_config_path()}"
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "locpipe" / LEDGER_NAME, "the house default"


def ledger_path(explicit: Path | None = None) -> Path:
    """The forensic ledger every command uses by default (see ``ledger_location``)."""
    return ledger_location(explicit)[0]


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
            for statement in (*_AB_SCHEMA, _FLOOR_SCHEMA):
                con.execute(statement)
            self._add_columns(con)
            yield con
        finally:
            con.close()

    @staticmethod
    def _add_columns(con: sqlite3.Connection) -> None:
        have = {row[1] for row in con.execute("PRAGMA table_info(payloads)")}
        for name, decl in _ADDED_COLUMNS.items():
            if name not in have:
                try:
                    con.execute(f"ALTER TABLE payloads ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise

    def _insert_payload(self, con: sqlite3.Connection, distributor: str, market: str, episode: str,
                        export_id: str, file: str, now: str) -> Payload:
        """The export's payload: a pending (or void) one of the same export taken over, else
        the episode code's next serial inserted (inside the caller's IMMEDIATE transaction, so
        no two writers get the same serial)."""
        self._void_abandoned(con)
        d, e = distributor_code(distributor), episode_code(episode)
        row = con.execute("SELECT serial FROM payloads WHERE distributor = ? AND market = ? AND episode = ? AND "
                          "export_id = ? AND state IN (?, ?) ORDER BY serial DESC LIMIT 1",
                          (distributor, market, episode, export_id, PENDING, VOID)).fetchone()
        if row is not None:  # a render of this export died: its payload is this render's
            payload = Payload(d, e, row[0])
            con.execute("UPDATE payloads SET state = ?, owner = ?, file = ? WHERE payload_hex = ?",
                        (PENDING, owner_name(), file, payload.hex))
            log.info("forensic payload %s of %s %s %s was issued to a render that never finished: reused",
                     payload.hex, distributor, market, episode)
            return payload
        (serial,) = con.execute("SELECT MAX(COALESCE(MAX(serial) + 1, 0), (SELECT COALESCE(MAX(next_serial), 0) "
                                "FROM serial_floor WHERE episode_code = ?)) FROM payloads WHERE episode_code = ?",
                                (e, e)).fetchone()
        if serial >= 1 << SERIAL_BITS:
            raise LedgerError(f"{self.path}: all {1 << SERIAL_BITS} serials of episode code {e} are used")
        payload = Payload(d, e, serial)
        con.execute("INSERT INTO payloads (payload_hex, distributor, distributor_code, market, episode, episode_code, "
                    "serial, export_id, file, created_at, state, owner, key_fingerprint) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (payload.hex, distributor, d, market, episode, e, serial, export_id, file, now, PENDING,
                     owner_name(), _key_fingerprint(self.path)))
        return payload

    @staticmethod
    def _void_abandoned(con: sqlite3.Connection) -> int:
        """Mark void the pending payloads whose render process (on this host) is gone."""
        rows = con.execute("SELECT payload_hex, owner FROM payloads WHERE state = ?", (PENDING,)).fetchall()
        gone = [hex_ for hex_, owner in rows if owner and owner_gone(owner)]
        for hex_ in gone:
            con.execute("UPDATE payloads SET state = ? WHERE payload_hex = ?", (VOID, hex_))
        if gone:
            log.warning("forensic ledger: %d payload(s) issued to renders that never finished marked void: %s",
                        len(gone), ", ".join(gone))
        return len(gone)

    def void_abandoned(self) -> int:
        """Mark void every pending payload whose render process on this host is gone; their count."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                count = self._void_abandoned(con)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return count

    def issue(self, *, distributor: str, market: str, episode: str, export_id: str, file: str = "") -> Payload:
        """The payload of this export: the next serial for this episode's code, recorded as
        pending until ``finalize`` (a pending one of the same export, left by a render that
        died, is taken over: one serial per export, however often its render is killed)."""
        now = _now()
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                payload = self._insert_payload(con, distributor, market, episode, export_id, file, now)
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

    def finalize(self, payload: Payload) -> None:
        """The render carrying ``payload`` finished: the payload is final (idempotent; a cached
        render finalizes again at no cost, and also rescues a payload voided meanwhile)."""
        with self._connect() as con:
            con.execute("UPDATE payloads SET state = ? WHERE payload_hex = ? AND state != ?",
                        (FINAL, payload.hex, FINAL))

    def withdraw(self, payload: Payload) -> None:
        """Forget a payload whose export was never written (the render failed); for an A/B
        batch payload also its timing and members (same as ``withdraw_batch``). A payload
        another live render took over meanwhile (``issue`` of the same export) stays."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            row = con.execute("SELECT owner, state FROM payloads WHERE payload_hex = ?", (payload.hex,)).fetchone()
            if row is not None and row[1] != FINAL and row[0] not in ("", owner_name()) and not owner_gone(row[0]):
                con.execute("COMMIT")
                return
            for table in ("ab_members", "ab_batches", "payloads"):
                con.execute(f"DELETE FROM {table} WHERE payload_hex = ?", (payload.hex,))
            con.execute("COMMIT")

    # ----------------------------------------------------------------------- A/B batches

    def issue_batch(self, *, market: str, episode: str, distributors: list[str], export_ids: list[str],
                    files: list[str] | None = None, fps: Fraction | float | str, gop: int, n_frames: int,
                    batch_id: str = "") -> tuple[Payload, list[int]]:
        """Allocate an A/B batch payload for (market, episode) and its first members.

        One transaction: the payloads row (distributor ``ab-batch:<market>``, export id
        ``batch_id`` or ``ab-batch:<episode>``), the timing (``fps`` exact, e.g.
        Fraction(30000, 1001) or "30000/1001"; ``gop`` frames per segment; ``n_frames`` of
        the episode) and members 0..n-1 in the order given. Returns (payload, indices).
        """
        from locpipe.watermark.ab import AB_VERSION

        if gop < 2 or n_frames < 1:
            raise ValueError("an A/B batch needs gop >= 2 and n_frames >= 1")
        rate = Fraction(fps).limit_denominator(1001) if isinstance(fps, float) else Fraction(fps)
        rows = self._member_rows(distributors, export_ids, files)
        now = _now()
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                payload = self._insert_payload(con, batch_distributor(market), market, episode,
                                               batch_id or f"ab-batch:{episode}", "", now)
                # a batch taken over from a render that died: its timing is this render's
                con.execute("INSERT OR REPLACE INTO ab_batches VALUES (?, ?, ?, ?, ?, ?)",
                            (payload.hex, f"{rate.numerator}/{rate.denominator}", gop, n_frames, AB_VERSION, now))
                indices = self._insert_members(con, payload, rows, now)
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        log.info("issued A/B batch payload %s for %s %s with %d members", payload.hex, market, episode, len(indices))
        return payload, indices

    def add_members(self, batch: Payload, *, distributors: list[str], export_ids: list[str],
                    files: list[str] | None = None) -> list[int]:
        """Add distributors to an existing batch (next free indices, never reused)."""
        rows = self._member_rows(distributors, export_ids, files)
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if con.execute("SELECT 1 FROM ab_batches WHERE payload_hex = ?", (batch.hex,)).fetchone() is None:
                    raise LedgerError(f"{self.path}: {batch.hex} is not an A/B batch")
                indices = self._insert_members(con, batch, rows, _now())
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return indices

    def ensure_member(self, batch: Payload, *, distributor: str, export_id: str, file: str = "") -> int:
        """The index of (distributor, export_id) in ``batch``, added if it has none: one
        transaction, so concurrent renders of the same copy never get two indices."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if con.execute("SELECT 1 FROM ab_batches WHERE payload_hex = ?", (batch.hex,)).fetchone() is None:
                    raise LedgerError(f"{self.path}: {batch.hex} is not an A/B batch")
                row = con.execute("SELECT idx FROM ab_members WHERE payload_hex = ? AND distributor = ? AND "
                                  "export_id = ? ORDER BY idx LIMIT 1", (batch.hex, distributor, export_id)).fetchone()
                index = row[0] if row else self._insert_members(con, batch, [(distributor, export_id, file)], _now())[0]
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        return index

    @staticmethod
    def _member_rows(distributors: list[str], export_ids: list[str], files: list[str] | None) -> list[tuple]:
        files = list(files) if files is not None else [""] * len(distributors)
        if not len(distributors) == len(export_ids) == len(files):
            raise ValueError("distributors, export_ids and files must have the same length")
        return list(zip(distributors, export_ids, files))

    @staticmethod
    def _insert_members(con: sqlite3.Connection, batch: Payload, rows: list[tuple], now: str) -> list[int]:
        # next indices after the highest one recorded: an index is never given to two members
        (start,) = con.execute("SELECT COALESCE(MAX(idx) + 1, 0) FROM ab_members WHERE payload_hex = ?",
                               (batch.hex,)).fetchone()
        indices = list(range(start, start + len(rows)))
        con.executemany("INSERT INTO ab_members VALUES (?, ?, ?, ?, ?, ?)",
                        [(batch.hex, i, dist, xid, f, now) for i, (dist, xid, f) in zip(indices, rows)])
        return indices

    def batch_info(self, payload: Payload) -> ABBatch | None:
        """The A/B timing of ``payload``, or None when it is not an A/B batch."""
        with self._connect() as con:
            row = con.execute("SELECT payload_hex, fps, gop, n_frames, ab_version, created_at FROM ab_batches "
                              "WHERE payload_hex = ?", (payload.hex,)).fetchone()
        return ABBatch(*row) if row else None

    def members(self, batch: Payload) -> list[ABMember]:
        """The batch's distributors, by index."""
        with self._connect() as con:
            rows = con.execute("SELECT payload_hex, idx, distributor, export_id, file, created_at FROM ab_members "
                               "WHERE payload_hex = ? ORDER BY idx", (batch.hex,)).fetchall()
        return [ABMember(*row) for row in rows]

    def record_member_file(self, batch: Payload, index: int, file: str) -> None:
        """Note where member ``index``'s assembled copy was written."""
        with self._connect() as con:
            con.execute("UPDATE ab_members SET file = ? WHERE payload_hex = ? AND idx = ?", (file, batch.hex, index))

    def withdraw_member(self, batch: Payload, index: int) -> None:
        """Forget one member whose copy was never assembled. Its index is not handed out
        again while a higher index exists (a reused index would be ambiguous for copies
        already out); withdraw the last member only if its copy never left."""
        with self._connect() as con:
            con.execute("DELETE FROM ab_members WHERE payload_hex = ? AND idx = ?", (batch.hex, index))

    def withdraw_batch(self, batch: Payload) -> None:
        """Forget a batch whose variants were never rendered: payload, timing, members."""
        self.withdraw(batch)

    def entries(self) -> list[LedgerEntry]:
        """Every issued payload, oldest first."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {_ENTRY_COLUMNS} FROM payloads ORDER BY created_at, rowid").fetchall()
        return [LedgerEntry(*row) for row in rows]

    def lookup(self, payload: Payload) -> LedgerEntry | None:
        with self._connect() as con:
            row = con.execute(f"SELECT {_ENTRY_COLUMNS} FROM payloads WHERE payload_hex = ?",
                              (payload.hex,)).fetchone()
        return LedgerEntry(*row) if row else None

    def for_episode(self, episode: str) -> list[LedgerEntry]:
        """Every payload issued for ``episode`` (by name), oldest first."""
        with self._connect() as con:
            rows = con.execute(f"SELECT {_ENTRY_COLUMNS} FROM payloads WHERE episode = ? ORDER BY created_at, rowid",
                               (episode,)).fetchall()
        return [LedgerEntry(*row) for row in rows]

    def raise_floors(self, floors: dict[int, int]) -> None:
        """New serials of each episode code start at least at ``floors[code]`` (archived ledgers)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            for code, floor in floors.items():
                con.execute("INSERT INTO serial_floor VALUES (?, ?) ON CONFLICT(episode_code) DO UPDATE SET "
                            "next_serial = MAX(next_serial, excluded.next_serial)", (code, floor))
            con.execute("COMMIT")

    def next_serials(self) -> dict[int, int]:
        """episode code -> the next serial this ledger would give (for archiving it into another)."""
        with self._connect() as con:
            rows = con.execute("SELECT episode_code, MAX(serial) + 1 FROM payloads GROUP BY episode_code").fetchall()
        return {code: nxt for code, nxt in rows}
