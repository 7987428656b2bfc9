"""The daemon's loop: settle, claim, run, retire; adopt what dead daemons left; stop cleanly.

One episode runs at a time per daemon, and a daemon claims the next arrival only when it is
idle, so more daemons on the same inbox share the work (the rename and the journal keep
them apart). A failed attempt is retried after
``retry_base * 2**(attempt-1)`` seconds, only for the markets that failed (finished markets
stay exported); after ``max_attempts`` the episode goes to ``.failed/`` with a reason.

SIGTERM/SIGINT: no new claims or attempts; the running episode stops at its next stage
boundary (the stage in progress finishes and is cached), the claim goes back to the queue
with its attempt given back, and the daemon exits 0. A second signal stops the stage at once.
A ``kill -9`` leaves the claim "running" under a dead daemon: the next daemon to start (or any
live one, after its owner's pid is gone or its heartbeat is older than ``lease``) adopts it and
resumes from the stage cache; that interrupted attempt counts as one of the three.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from locpipe.core.batch import discover_episodes
from locpipe.core.logs import log_context
from locpipe.core.manifest import write_manifest
from locpipe.core.names import episode_name
from locpipe.core.reports import EpisodeReport, UnitReport, failed_episode
from locpipe.core.settings import RunSettings
from locpipe.daemon import files
from locpipe.daemon.files import Inbox
from locpipe.daemon.journal import Claim, Journal, Owner
from locpipe.daemon.watcher import Settler, is_video, start_event_hint
from locpipe.daemon.worker import Attempt, ChildLogging, kill_stale_worker, run_attempt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WatchSettings:
    inbox: Path
    state: Path
    run: RunSettings
    settle: float = 10.0
    poll: float = 2.0
    once: bool = False
    retry_base: float = 30.0
    max_attempts: int = 3
    #: a daemon on another host whose heartbeat is older than this is presumed dead
    lease: float = 120.0
    events: bool = True
    log_level: str = "INFO"
    log_format: str = "text"


class Daemon:
    """``run()`` until stopped (or, with ``once``, until the inbox is empty); returns an exit code."""

    def __init__(self, settings: WatchSettings):
        self.s = settings
        self.inbox = Inbox(settings.inbox)
        self.me = Owner(uuid.uuid4().hex[:12], os.getpid(), socket.gethostname())
        self.stop = threading.Event()
        self.force = threading.Event()
        self.wake = threading.Event()
        self.failed_here = 0
        self._last_beat = 0.0

    # ------------------------------------------------------------------ lifecycle

    def request_stop(self, signum: int | None = None, _frame=None) -> None:
        """First signal: finish the current stage, then exit. Second: stop the stage now."""
        if self.stop.is_set():
            log.warning("second stop request: stopping the running stage now")
            self.force.set()
        else:
            name = signal.Signals(signum).name if signum else "stop"
            log.info("%s: no new work; the running episode stops after its current stage", name)
            self.stop.set()
        self.wake.set()

    def run(self) -> int:
        """Install the signal handlers (main thread), then loop; always leaves the journal consistent."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self.request_stop)
        self.inbox.create()
        journal = Journal(self.s.state)
        journal.register(self.me)
        observer = start_event_hint(self.s.inbox, self.wake) if self.s.events else None
        log.info("watching %s (daemon %s, pid %d): settle %gs, poll %gs, markets %s -> %s", self.s.inbox,
                 self.me.id, self.me.pid, self.s.settle, self.s.poll,
                 ",".join(m.code for m in self.s.run.markets), self.s.run.out_dir)
        self._adopt_orphans(journal)  # first: it stops workers a dead daemon left, then sweep their files
        files.sweep_temporaries(self.s.run.out_dir, self.s.run.work_dir)
        try:
            self._loop(journal, Settler(self.s.inbox, self.s.settle))
        finally:
            released = journal.unregister(self.me)
            if released:
                log.info("%d unfinished claim(s) left queued for the next start", released)
            journal.close()
            if observer is not None:
                # watchdog 7 logs a harmless error when its inotify thread races stop(): mute it
                logging.getLogger("watchdog").setLevel(logging.CRITICAL)
                observer.stop()
                observer.join(timeout=2)
        return 3 if (self.s.once and self.failed_here) else 0

    def _loop(self, journal: Journal, settler: Settler) -> None:
        while not self.stop.is_set():
            self._beat(journal)
            self._adopt_orphans(journal)
            ready, settling = settler.scan()
            claim = journal.next_ready(self.me, time.time())
            if claim is None and ready and self._claim_one(journal, settler, ready):
                continue
            if claim is not None:
                self._process(journal, claim)
                continue
            owned = journal.owned(self.me)
            if self.s.once and not settling and not owned:
                log.info("inbox empty: done (--once)")
                return
            self._sleep(settler, owned)

    def _sleep(self, settler: Settler, owned: list[Claim]) -> None:
        """Until the next poll, the next retry or settle deadline, or a filesystem event."""
        delays = [self.s.poll]
        delays += [max(0.05, c.next_try - time.time()) for c in owned if c.state == "retry"]
        if (hint := settler.wait_hint()) is not None:
            delays.append(hint + 0.05)
        self.wake.wait(min(delays))
        self.wake.clear()

    # ------------------------------------------------------------------ claiming

    def _claim_one(self, journal: Journal, settler: Settler, ready: list[str]) -> bool:
        """Claim the first arrived entry this daemon wins, only when idle: peers share the inbox."""
        for name in ready:
            settler.forget(name)
            if self._claim(journal, name):
                return True
        return False

    def _claim(self, journal: Journal, name: str) -> bool:
        """Rename into .processing, then journal one claim per episode (a folder: each video)."""
        dest = files.claim(self.inbox, name)
        if dest is None:
            return False
        episodes = [dest] if dest.is_file() else discover_episodes([dest])
        batch = "" if dest.is_file() else name
        entries = [(str(p.relative_to(self.inbox.processing)), batch, episode_name(p)) for p in episodes]
        markets = [m.code for m in self.s.run.markets]
        self._warn_on_name_clash(journal, entries)
        journal.add_claims(self.me, entries, markets)
        log.info("claimed %s: %d episode(s)", name, len(entries))
        if batch and not entries:
            files.close_batch(self.inbox, batch)
        return True

    @staticmethod
    def _warn_on_name_clash(journal: Journal, entries: list[tuple[str, str, str]]) -> None:
        """Two active claims exporting under one name overwrite each other's exports: say so."""
        active = journal.active_episodes()
        for file, _batch, episode in entries:
            if episode in active and active[episode] != file:
                log.warning("%s exports as %r, like %s still in progress: the later export replaces the "
                            "earlier one", file, episode, active[episode])

    def _adopt_orphans(self, journal: Journal) -> None:
        """Take over claims whose daemon is gone, and files in .processing that no claim names."""
        if self.stop.is_set():
            return
        for claim in journal.orphans(self.me, self.s.lease):
            if claim.host == self.me.host and kill_stale_worker(claim.worker_pgid):
                log.warning("stopped the worker a dead daemon left running for %s", claim.file)
            if journal.adopt(claim, self.me):
                log.info("re-queued %s (was %s under a stopped daemon, %d attempt(s) so far)", claim.file,
                         claim.state, claim.attempts)
        self._adopt_unrecorded(journal)

    def _adopt_unrecorded(self, journal: Journal) -> None:
        """A daemon killed between its rename and its journal write leaves an unnamed claim."""
        known = journal.active_files()
        if journal.live_peers(self.me, self.s.lease):
            return  # a live peer may be between its rename and its journal write
        for entry in sorted(self.inbox.processing.iterdir()):
            if entry.name.startswith("."):
                continue
            paths = [entry] if entry.is_file() else discover_episodes([entry])
            rels = [str(p.relative_to(self.inbox.processing)) for p in paths]
            new = [r for r in rels if r not in known and is_video(Path(r))]
            if new:
                batch = "" if entry.is_file() else entry.name
                journal.add_claims(self.me, [(r, batch, episode_name(Path(r))) for r in new],
                                   [m.code for m in self.s.run.markets])
                log.info("re-queued %s found in .processing without a claim", ", ".join(new))

    # ------------------------------------------------------------------ processing

    def _process(self, journal: Journal, claim: Claim) -> None:
        with log_context(episode=claim.episode):
            markets = set(journal.pending_markets(claim.id)) or {m.code for m in self.s.run.markets}
            settings = replace(self.s.run, markets=tuple(m for m in self.s.run.markets if m.code in markets))
            attempt_no = journal.begin_attempt(claim.id, None)
            log.info("attempt %d/%d: %s for %s", attempt_no, self.s.max_attempts, claim.file,
                     ",".join(m.code for m in settings.markets))
            started = time.perf_counter()
            attempt = run_attempt(
                self.inbox.processing / claim.file, settings, self._child_logging(claim),
                on_started=lambda pid: journal.set_worker(claim.id, pid),
                on_event=lambda market, stage, status: journal.unit_event(claim.id, market, stage, status),
                tick=lambda: self._tick(journal))
            self._settle(journal, claim, attempt_no, attempt, settings, started)

    def _beat(self, journal: Journal) -> None:
        """Heartbeat at most every couple of seconds: enough for a lease of minutes, few writes."""
        now = time.monotonic()
        if now - self._last_beat >= min(2.0, self.s.lease / 10):
            journal.heartbeat(self.me)
            self._last_beat = now

    def _tick(self, journal: Journal) -> str | None:
        """Between worker messages: keep the heartbeat fresh and pass stop requests on."""
        self._beat(journal)
        if self.force.is_set():
            return "kill"
        return "stop" if self.stop.is_set() else None

    def _child_logging(self, claim: Claim) -> ChildLogging:
        return ChildLogging(self.s.log_level, self.s.log_format, self._log_file(claim))

    def _log_file(self, claim: Claim) -> Path:
        return self.s.state.parent / ".locpipe-logs" / f"claim-{claim.id}.log"

    def _settle(self, journal: Journal, claim: Claim, attempt_no: int, attempt: Attempt, settings: RunSettings,
                started: float) -> None:
        """Record the attempt's outcome: requeue on a stop, done, retry later, or give up."""
        if attempt.report is None and (attempt.checkpointed or self.stop.is_set()):
            journal.requeue(claim.id, uncount=True)
            log.info("checkpointed %s: resumes from the stage cache on the next start", claim.file)
            return
        report = attempt.report or _died(claim, settings, attempt)
        journal.record_units(claim.id, _market_outcomes(report.units))
        self._write_manifest(report, settings, started)
        failed = [u for u in report.units if u.status != "ok"]
        if not failed:
            journal.settle_claim(claim.id, "done")
            self._retire(journal, claim, self.inbox.done)
            log.info("done: %d unit(s) exported in %.1fs", len(report.units), time.perf_counter() - started)
            return
        first = failed[0]
        if attempt_no < self.s.max_attempts:
            delay = self.s.retry_base * 2 ** (attempt_no - 1)
            journal.settle_claim(claim.id, "retry", error=first.error, stage=first.failed_stage,
                                 next_try=time.time() + delay)
            log.warning("attempt %d/%d failed at %s (%s); retrying in %.1fs", attempt_no, self.s.max_attempts,
                        first.failed_stage, first.error, delay)
            return
        self._give_up(journal, claim, attempt_no, failed)

    def _give_up(self, journal: Journal, claim: Claim, attempts: int, failed: list[UnitReport]) -> None:
        first = failed[0]
        journal.settle_claim(claim.id, "failed", error=first.error, stage=first.failed_stage)
        journal.finish_units(claim.id, "failed")
        log_tail = files.tail(self._log_file(claim))  # before _retire removes the attempt log
        dest = self._retire(journal, claim, self.inbox.failed)
        reason = {
            "file": claim.file, "episode": claim.episode, "error": first.error, "stage": first.failed_stage,
            "attempts": attempts, "failed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "units": [{"market": u.market, "stage": u.failed_stage, "error": u.error} for u in failed],
            "log_tail": log_tail,
        }
        if dest is not None:
            from locpipe.core.store import atomic_write_text

            atomic_write_text(dest.with_name(dest.name + ".reason.json"), json.dumps(reason, indent=1,
                                                                                     ensure_ascii=False))
        self.failed_here += 1
        log.error("gave up after %d attempts at %s: %s -> %s", attempts, first.failed_stage, first.error, dest)

    def _retire(self, journal: Journal, claim: Claim, dest_root: Path) -> Path | None:
        """Move the episode file out of .processing; close its series folder when it is the last."""
        try:
            dest = files.retire(self.inbox, claim.file, dest_root)
        except OSError as exc:
            log.error("cannot move %s to %s: %s", claim.file, dest_root, exc)
            dest = None
        if claim.batch and not journal.batch_open(claim.batch):
            files.close_batch(self.inbox, claim.batch)
        self._log_file(claim).unlink(missing_ok=True)
        return dest

    def _write_manifest(self, report: EpisodeReport, settings: RunSettings, started: float) -> None:
        """Merge into OUT_DIR/manifest.json under a lock: daemons sharing OUT_DIR must not lose units."""
        write_manifest(settings.out_dir, [report], settings, started)


def _died(claim: Claim, settings: RunSettings, attempt: Attempt) -> EpisodeReport:
    """A report for an attempt whose worker died without one (crash, OOM kill, signal)."""
    code = attempt.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code and code < 0 else f"exit {code}"
    stage = attempt.stage or "worker"
    error = f"worker process died ({how}) during {stage}"
    return failed_episode(claim.episode, claim.file, [m.code for m in settings.markets], error, stage)


def _market_outcomes(units) -> list[tuple[str, str, str, str, str]]:
    """(episode, market, state, stage, error) per journal row: with several distributors a
    market has one unit each, and the market is done only when every copy is."""
    rows: dict[tuple[str, str], tuple[str, str, str, str, str]] = {}
    for u in units:
        key = (u.episode, u.market)
        if u.status != "ok":
            who = f"{u.distributor}: " if u.distributor else ""
            rows[key] = (u.episode, u.market, "failed", u.failed_stage, who + u.error)
        elif key not in rows:
            rows[key] = (u.episode, u.market, "done", "", "")
    return list(rows.values())
