"""The daemon's SQLite journal: who claimed which file, how often it was tried, unit states.

Why SQLite: a restart (or a second daemon on the same inbox) must tell a claim that is being
worked on from one whose daemon died, and ``locpipe status`` must read all of it while the
daemon runs. WAL mode lets readers in during writes; every write is one short
``BEGIN IMMEDIATE`` transaction and a busy timeout covers the rest.

Claim states: ``queued`` (ready to run), ``running``, ``retry`` (waiting for its back-off),
``done``, ``failed``. A claim is *active* in the first three; at most one active claim per
file (a partial unique index), so two daemons sharing a journal never both own a file.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.locks import pid_alive

ACTIVE = ("queued", "running", "retry")

SCHEMA = """
CREATE TABLE IF NOT EXISTS daemons (
    id TEXT PRIMARY KEY, pid INTEGER NOT NULL, host TEXT NOT NULL,
    started REAL NOT NULL, heartbeat REAL NOT NULL, stopped REAL
);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    file TEXT NOT NULL,               -- path under INBOX/.processing (ep.mp4 or series/ep.mp4)
    batch TEXT NOT NULL DEFAULT '',   -- the series folder it was claimed with, '' for a lone file
    episode TEXT NOT NULL,
    claimed_at REAL NOT NULL,
    daemon TEXT, pid INTEGER, host TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL,
    next_try REAL NOT NULL DEFAULT 0,
    stage TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT '',
    worker_pgid INTEGER,
    updated REAL NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS claims_active_file ON claims(file)
    WHERE state IN ('queued', 'running', 'retry');
CREATE TABLE IF NOT EXISTS units (
    episode TEXT NOT NULL, market TEXT NOT NULL, claim INTEGER NOT NULL,
    state TEXT NOT NULL, stage TEXT NOT NULL DEFAULT '', error TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL,
    PRIMARY KEY (episode, market)
);
"""


@dataclass(frozen=True)
class Owner:
    """One daemon process: the id is unique per start, pid and host say where it runs."""

    id: str
    pid: int
    host: str


@dataclass(frozen=True)
class Claim:
    id: int
    file: str
    batch: str
    episode: str
    state: str
    attempts: int
    next_try: float
    stage: str
    daemon: str | None
    worker_pgid: int | None
    host: str | None


def _claim(row: sqlite3.Row) -> Claim:
    return Claim(id=row["id"], file=row["file"], batch=row["batch"], episode=row["episode"], state=row["state"],
                 attempts=row["attempts"], next_try=row["next_try"], stage=row["stage"], daemon=row["daemon"],
                 worker_pgid=row["worker_pgid"], host=row["host"])


class Journal:
    """Open (and create) the journal at ``path``; one connection per process."""

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), timeout=timeout, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute("PRAGMA synchronous = NORMAL")
        with self._tx() as db:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A short write transaction: the write lock is taken at once, so no deadlock upgrades."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # ------------------------------------------------------------------ daemons

    def register(self, me: Owner) -> None:
        now = time.time()
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO daemons (id, pid, host, started, heartbeat) VALUES (?, ?, ?, ?, ?)",
                       (me.id, me.pid, me.host, now, now))

    def heartbeat(self, me: Owner) -> None:
        with self._tx() as db:
            db.execute("UPDATE daemons SET heartbeat = ? WHERE id = ?", (time.time(), me.id))

    def unregister(self, me: Owner) -> int:
        """Clean exit: hand this daemon's unfinished claims back (queued, unowned); returns how many."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE daemons SET stopped = ?, heartbeat = ? WHERE id = ?", (now, now, me.id))
            cur = db.execute("UPDATE claims SET state = CASE state WHEN 'running' THEN 'queued' ELSE state END, "
                             "daemon = NULL, worker_pgid = NULL, updated = ? "
                             "WHERE daemon = ? AND state IN ('queued', 'running', 'retry')", (now, me.id))
            return cur.rowcount

    def live_peers(self, me: Owner, lease: float) -> int:
        """Other daemons that look alive (for adopting unrecorded files only when no one else is)."""
        rows = self.db.execute("SELECT * FROM daemons WHERE id != ? AND stopped IS NULL", (me.id,)).fetchall()
        return sum(not _owner_dead(r["pid"], r["host"], r["heartbeat"], r["stopped"], me, lease) for r in rows)

    # ------------------------------------------------------------------ claims

    def add_claims(self, me: Owner, entries: Sequence[tuple[str, str, str]], markets: Sequence[str]) -> list[int]:
        """Record (file, batch, episode) claims just renamed into .processing, with queued units."""
        now = time.time()
        ids = []
        with self._tx() as db:
            for file, batch, episode in entries:
                cur = db.execute(
                    "INSERT INTO claims (file, batch, episode, claimed_at, daemon, pid, host, state, updated) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 'queued', ?)",
                    (file, batch, episode, now, me.id, me.pid, me.host, now))
                ids.append(cur.lastrowid)
                db.executemany("INSERT OR REPLACE INTO units (episode, market, claim, state, updated) "
                               "VALUES (?, ?, ?, 'queued', ?)", [(episode, m, cur.lastrowid, now) for m in markets])
        return ids

    def active_files(self) -> set[str]:
        rows = self.db.execute("SELECT file FROM claims WHERE state IN ('queued', 'running', 'retry')")
        return {r["file"] for r in rows}

    def active_episodes(self) -> dict[str, str]:
        """Export name -> file of every active claim."""
        rows = self.db.execute("SELECT episode, file FROM claims WHERE state IN ('queued', 'running', 'retry')")
        return {r["episode"]: r["file"] for r in rows}

    def next_ready(self, me: Owner, now: float) -> Claim | None:
        row = self.db.execute("SELECT * FROM claims WHERE daemon = ? AND state IN ('queued', 'retry') "
                              "AND next_try <= ? ORDER BY next_try, id LIMIT 1", (me.id, now)).fetchone()
        return _claim(row) if row else None

    def owned(self, me: Owner) -> list[Claim]:
        rows = self.db.execute("SELECT * FROM claims WHERE daemon = ? AND state IN ('queued', 'running', 'retry')",
                               (me.id,)).fetchall()
        return [_claim(r) for r in rows]

    def batch_open(self, batch: str) -> bool:
        """True while some episode of a series folder is still active."""
        row = self.db.execute("SELECT 1 FROM claims WHERE batch = ? AND state IN ('queued', 'running', 'retry') "
                              "LIMIT 1", (batch,)).fetchone()
        return row is not None

    def orphans(self, me: Owner, lease: float) -> list[Claim]:
        """Active claims whose daemon stopped, died on this host, or missed heartbeats for ``lease`` s."""
        rows = self.db.execute(
            "SELECT c.*, d.pid AS dpid, d.host AS dhost, d.heartbeat AS beat, d.stopped AS stopped, "
            "d.id AS did FROM claims c LEFT JOIN daemons d ON c.daemon = d.id "
            "WHERE c.state IN ('queued', 'running', 'retry') AND (c.daemon IS NULL OR c.daemon != ?)",
            (me.id,)).fetchall()
        return [_claim(r) for r in rows
                if r["daemon"] is None or r["did"] is None
                or _owner_dead(r["dpid"], r["dhost"], r["beat"], r["stopped"], me, lease)]

    def adopt(self, claim: Claim, me: Owner) -> bool:
        """Take over an orphaned claim; only one daemon wins (compare-and-set on the old owner)."""
        now = time.time()
        with self._tx() as db:
            cur = db.execute(
                "UPDATE claims SET daemon = ?, pid = ?, host = ?, worker_pgid = NULL, updated = ?, "
                "state = CASE state WHEN 'running' THEN 'queued' ELSE state END "
                "WHERE id = ? AND daemon IS ? AND state IN ('queued', 'running', 'retry')",
                (me.id, me.pid, me.host, now, claim.id, claim.daemon))
            return cur.rowcount == 1

    def begin_attempt(self, claim_id: int, worker_pgid: int | None) -> int:
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE claims SET attempts = attempts + 1, state = 'running', worker_pgid = ?, "
                       "error = '', updated = ? WHERE id = ?", (worker_pgid, now, claim_id))
            db.execute("UPDATE units SET state = 'running', attempts = attempts + 1, updated = ? "
                       "WHERE claim = ? AND state != 'done'", (now, claim_id))
            return db.execute("SELECT attempts FROM claims WHERE id = ?", (claim_id,)).fetchone()[0]

    def set_worker(self, claim_id: int, worker_pgid: int | None) -> None:
        with self._tx() as db:
            db.execute("UPDATE claims SET worker_pgid = ? WHERE id = ?", (worker_pgid, claim_id))

    def requeue(self, claim_id: int, *, uncount: bool) -> None:
        """Back to the queue after a shutdown checkpoint; ``uncount`` gives the attempt back."""
        now = time.time()
        with self._tx() as db:
            db.execute("UPDATE claims SET state = 'queued', worker_pgid = NULL, updated = ?, "
                       "attempts = attempts - ? WHERE id = ?", (now, int(uncount), claim_id))
            db.execute("UPDATE units SET state = 'queued', attempts = attempts - ?, updated = ? "
                       "WHERE claim = ? AND state = 'running'", (int(uncount), now, claim_id))

    def settle_claim(self, claim_id: int, state: str, *, error: str = "", stage: str = "",
                     next_try: float = 0.0) -> None:
        """Move a claim to retry (with ``next_try``), done or failed."""
        with self._tx() as db:
            db.execute("UPDATE claims SET state = ?, error = ?, stage = ?, next_try = ?, worker_pgid = NULL, "
                       "updated = ? WHERE id = ?", (state, error, stage, next_try, time.time(), claim_id))

    # ------------------------------------------------------------------ units

    def unit_event(self, claim_id: int, market: str, stage: str, status: str) -> None:
        """A progress event from the worker: which stage each unit is in (market '' = all)."""
        now = time.time()
        where = f"{market}/{stage}" if market else stage
        with self._tx() as db:
            db.execute("UPDATE claims SET stage = ?, updated = ? WHERE id = ?", (f"{where}:{status}", now, claim_id))
            sql = "UPDATE units SET stage = ?, updated = ? WHERE claim = ? AND state != 'done'"
            args: tuple = (stage, now, claim_id)
            if market:
                sql, args = sql + " AND market = ?", args + (market,)
            db.execute(sql, args)

    def record_units(self, claim_id: int, units: Sequence[tuple[str, str, str, str, str]]) -> None:
        """Final (episode, market, state, stage, error) of each unit run in an attempt."""
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE units SET state = ?, stage = ?, error = ?, updated = ? "
                           "WHERE claim = ? AND episode = ? AND market = ?",
                           [(state, stage, error, now, claim_id, ep, m) for ep, m, state, stage, error in units])

    def finish_units(self, claim_id: int, state: str) -> None:
        """Units left unfinished when the claim ends (failed for good, or gave up) take its state."""
        with self._tx() as db:
            db.execute("UPDATE units SET state = ?, updated = ? WHERE claim = ? AND state NOT IN ('done', 'failed')",
                       (state, time.time(), claim_id))

    def pending_markets(self, claim_id: int) -> list[str]:
        rows = self.db.execute("SELECT market FROM units WHERE claim = ? AND state != 'done' ORDER BY market",
                               (claim_id,))
        return [r["market"] for r in rows]

    # ------------------------------------------------------------------ status

    def snapshot(self) -> dict[str, list[dict]]:
        """Everything ``locpipe status`` shows, as plain dicts."""
        return {table: [dict(r) for r in self.db.execute(f"SELECT * FROM {table} ORDER BY {order}")]
                for table, order in (("claims", "id"), ("units", "episode, market"), ("daemons", "started"))}


def _owner_dead(pid: int | None, host: str | None, beat: float | None, stopped: float | None, me: Owner,
                lease: float) -> bool:
    if stopped is not None:
        return True
    if host == me.host and not pid_alive(pid):
        return True
    return beat is None or beat < time.time() - lease
