"""Translation memory: a source line with the same context is never translated twice.

Recaps and openings repeat across the episodes of a series; paying a backend (or an hour of
Whisper) again for them wastes money and, worse, may render them differently. The memory
is one SQLite file (in the work directory or a shared path). WAL mode plus a busy timeout
let several worker processes (``--jobs``, farm workers on a shared disk that supports
locking) read and write it at once; the first writer of a key wins, so every later episode
gets exactly the text the first one got.

The key is (normalized source text, source language, target language, hash of the previous
and next source lines, backend name, bible version): the same words in a different scene,
by a different backend or under a revised bible are translated afresh.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS tm (
    key TEXT PRIMARY KEY,
    source TEXT NOT NULL,
    source_lang TEXT NOT NULL,
    target_lang TEXT NOT NULL,
    context TEXT NOT NULL,
    backend TEXT NOT NULL,
    bible TEXT NOT NULL,
    target TEXT NOT NULL,
    created REAL NOT NULL,
    uses INTEGER NOT NULL DEFAULT 0,
    approved INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL DEFAULT '',
    approved_at REAL,
    episode TEXT NOT NULL DEFAULT ''
)
"""

#: columns added after the first schema (issue 14: reviewed lines): an older TM file gets
#: them by ALTER TABLE when it is opened, its rows unapproved
MIGRATIONS = {
    "approved": "ALTER TABLE tm ADD COLUMN approved INTEGER NOT NULL DEFAULT 0",
    "origin": "ALTER TABLE tm ADD COLUMN origin TEXT NOT NULL DEFAULT ''",
    "approved_at": "ALTER TABLE tm ADD COLUMN approved_at REAL",
    "episode": "ALTER TABLE tm ADD COLUMN episode TEXT NOT NULL DEFAULT ''",
}
#: the backend name approved rows are stored under: a reviewer's line serves every backend
APPROVED_BACKEND = "review"


def normalize(text: str) -> str:
    """NFKC (full-width punctuation -> ASCII), collapsed whitespace: trivial differences share a key."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text)).strip()


def context_hash(previous: str | None, following: str | None) -> str:
    payload = normalize(previous or "") + "\x1f" + normalize(following or "")
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class TMKey:
    source: str
    source_lang: str
    target_lang: str
    context: str
    backend: str
    bible: str = ""

    @property
    def digest(self) -> str:
        parts = (normalize(self.source), self.source_lang, self.target_lang, self.context, self.backend, self.bible)
        return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()

    @property
    def approved_digest(self) -> str:
        """Key of the reviewer-approved row for this line: no backend and no bible in it (a
        linguist's text is final whoever translated the machine version)."""
        parts = ("approved", normalize(self.source), self.source_lang, self.target_lang, self.context)
        return hashlib.sha256("\x1e".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class Approval:
    """Who approved a reviewed line: the review file's name, when, and for which episode."""

    origin: str
    when: float
    episode: str


def keys_for_lines(lines: list[str], source_lang: str, target_lang: str, backend: str, bible: str = "") -> list[TMKey]:
    """One key per line, its context being the lines just before and after it."""
    return [TMKey(source=text, source_lang=source_lang, target_lang=target_lang,
                  context=context_hash(lines[i - 1] if i else None, lines[i + 1] if i + 1 < len(lines) else None),
                  backend=backend, bible=bible)
            for i, text in enumerate(lines)]


@dataclass
class TMStats:
    hits: int = 0
    misses: int = 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class TranslationMemory:
    """Open per process (connections are not shared across processes); cheap to open."""

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.stats = TMStats()
        self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._wal(timeout)
        self._db.execute("PRAGMA synchronous = NORMAL")
        self._db.execute(SCHEMA)
        self._migrate()

    def _wal(self, timeout: float) -> None:
        """Switch the file to WAL; retried, because SQLite does not call the busy handler for it
        while another process is creating the same file (seen: "database is locked")."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                self._db.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _migrate(self) -> None:
        """Add the columns a TM file made by an older locpipe lacks (its rows stay machine rows)."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(tm)")}
        for column, statement in MIGRATIONS.items():
            if column not in have:
                try:
                    self._db.execute(statement)
                except sqlite3.OperationalError as exc:  # another process added it first
                    if "duplicate column" not in str(exc):
                        raise
                log.info("%s: translation memory upgraded (column %s)", self.path, column)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> TranslationMemory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def lookup_many(self, keys: Iterable[TMKey]) -> dict[TMKey, str]:
        """Stored translations of the keys found; counts hits and misses."""
        keys = list(keys)
        found: dict[str, str] = {}
        digests = [k.digest for k in keys]
        for i in range(0, len(digests), 500):  # stay under SQLite's parameter limit
            chunk = digests[i:i + 500]
            rows = self._db.execute(f"SELECT key, target FROM tm WHERE key IN ({','.join('?' * len(chunk))})", chunk)
            found.update(rows.fetchall())
        result = {k: found[d] for k, d in zip(keys, digests) if d in found}
        self.stats.hits += len(result)
        self.stats.misses += len(keys) - len(result)
        if result:
            self._db.executemany("UPDATE tm SET uses = uses + 1 WHERE key = ?", [(k.digest,) for k in result])
        return result

    def store_many(self, entries: dict[TMKey, str]) -> int:
        """Store new translations in one transaction; an existing key keeps its first text."""
        rows = [(k.digest, normalize(k.source), k.source_lang, k.target_lang, k.context, k.backend, k.bible, text,
                 time.time()) for k, text in entries.items()]
        if not rows:
            return 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            cur = self._db.executemany(
                "INSERT OR IGNORE INTO tm (key, source, source_lang, target_lang, context, backend, bible, target,"
                " created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return cur.rowcount

    def store_approved(self, entries: dict[TMKey, str], approval: Approval) -> int:
        """Store reviewed lines as approved entries; a newer review of a line replaces the older."""
        rows = [(k.approved_digest, normalize(k.source), k.source_lang, k.target_lang, k.context, APPROVED_BACKEND,
                 "", text, time.time(), approval.origin, approval.when, approval.episode)
                for k, text in entries.items()]
        if not rows:
            return 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO tm (key, source, source_lang, target_lang, context, backend, bible, target,"
                " created, approved, origin, approved_at, episode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return len(rows)

    def lookup_approved(self, keys: Iterable[TMKey], *,
                        exclude_episode: str = "") -> dict[TMKey, tuple[str, Approval]]:
        """Approved texts of the keys' source lines: the one approved in the same context, else
        the latest approved anywhere in the series. ``exclude_episode``: an episode does not
        take its own reviewed lines from here (its review file is applied to it directly)."""
        keys = list(keys)
        by_source: dict[tuple[str, str, str], list[TMKey]] = {}
        for k in keys:
            by_source.setdefault((normalize(k.source), k.source_lang, k.target_lang), []).append(k)
        sources = sorted({s for s, _a, _b in by_source})
        candidates: dict[TMKey, list[tuple[bool, float, str, Approval]]] = {}
        for i in range(0, len(sources), 500):
            chunk = sources[i:i + 500]
            rows = self._db.execute(
                "SELECT source, source_lang, target_lang, context, target, origin, approved_at, episode FROM tm"
                f" WHERE approved = 1 AND episode != ? AND source IN ({','.join('?' * len(chunk))})",
                [exclude_episode, *chunk])
            for source, src, tgt, context, target, origin, when, episode in rows:
                for k in by_source.get((source, src, tgt), []):
                    candidates.setdefault(k, []).append((k.context == context, when or 0.0, target,
                                                         Approval(origin, when or 0.0, episode)))
        # same context first, then the latest approval
        return {k: (best[2], best[3]) for k, found in candidates.items() for best in [max(found, key=lambda c: c[:2])]}

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM tm").fetchone()[0]
