"""Watch-folder daemon: real daemons (subprocesses), real files, a real 6 s episode.

The failure drills of issue 7: a growing file is not claimed early; ``kill -9`` during a
render, then a restart, leaves complete exports and no partial files; a poison file goes to
``.failed/`` after 3 attempts while a good episode completes; two daemons on one inbox never
process a file twice; SIGTERM checkpoints and exits 0; ``locpipe status`` shows the states.

Cost: the episode's shared stages (OCR, ASR) run once into a work folder shared by the
module; the drills that must catch a render in progress use their own distributor, which
changes only the render key. Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import cut_sample, make_clip

from locpipe.core.locks import pid_alive
from locpipe.daemon.files import sweep_temporaries
from locpipe.daemon.journal import Journal, Owner
from locpipe.daemon.watcher import Settler
from locpipe.daemon.worker import group_members
from locpipe.media.probe import probe

LOCPIPE = [sys.executable, "-m", "locpipe", "--log-level", "INFO"]
MARKET = "us-social"
EXPORTS = {f"{MARKET}/ep01.mp4", f"{MARKET}/ep01.en.srt", f"{MARKET}/ep01.en.vtt", f"{MARKET}/ep01.en.ass",
           f"{MARKET}/ep01.qc.json",
           "manifest.json"}
#: one pipeline run of the 6 s cut on a busy 2-core machine takes 15-40 s; leave room
RUN_TIMEOUT = 300


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def episode(tmp_path_factory) -> Path:
    return cut_sample(tmp_path_factory.mktemp("src") / "ep01.mp4", 0.5, 6.0)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One stage cache for the module: the episode's transcript is made once."""
    return tmp_path_factory.mktemp("work")


def watch_args(inbox: Path, out: Path, work: Path, *extra: str) -> list[str]:
    return [*LOCPIPE, "watch", str(inbox), "--out", str(out), "--markets", MARKET, "--work", str(work),
            "--settle", "1", "--poll", "0.2", "--retry-base", "0.3", *extra]


class Daemon:
    """A daemon subprocess whose stderr goes to a file (a pipe could fill and stall it)."""

    def __init__(self, log: Path, args: list[str]):
        self.log = log
        self._fh = open(log, "w")
        self.proc = subprocess.Popen(args, stdout=self._fh, stderr=subprocess.STDOUT)

    def text(self) -> str:
        return self.log.read_text()

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        finally:
            self._fh.close()

    def cleanup(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._fh.close()


@pytest.fixture
def daemons():
    started: list[Daemon] = []

    def start(log: Path, args: list[str]) -> Daemon:
        started.append(Daemon(log, args))
        return started[-1]

    yield start
    for d in started:
        d.cleanup()


def run_once(inbox: Path, out: Path, work: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(watch_args(inbox, out, work, "--once", *extra), capture_output=True, text=True,
                          timeout=RUN_TIMEOUT)


def rows(inbox: Path, table: str) -> list[dict]:
    db = inbox / ".locpipe-state.sqlite"
    if not db.exists():
        return []
    con = sqlite3.connect(db, timeout=10)
    con.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in con.execute(f"SELECT * FROM {table} ORDER BY id" if table == "claims"
                                             else f"SELECT * FROM {table}")]
    except sqlite3.OperationalError:  # the daemon is still creating its schema
        return []
    finally:
        con.close()


def wait_for(predicate, timeout: float, what: str, daemon: Daemon | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if daemon is not None and daemon.proc.poll() is not None:
            pytest.fail(f"daemon exited ({daemon.proc.returncode}) while waiting for {what}:\n{daemon.text()}")
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout}s waiting for {what}" + (f":\n{daemon.text()}" if daemon else ""))


def stage_is(inbox: Path, marker: str) -> bool:
    return any(marker in c["stage"] for c in rows(inbox, "claims"))


def out_files(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()}


def status(inbox: Path, *extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([*LOCPIPE, "status", str(inbox), *extra], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


# --------------------------------------------------------------------------- fast: settle, journal


def test_settler_waits_for_stable_size_and_ignores_temporaries(tmp_path):
    now = [0.0]
    settler = Settler(tmp_path, settle=10, clock=lambda: now[0])
    (tmp_path / "ep01.mp4").write_bytes(b"x" * 10)
    for name in ("ep02.mp4.part", ".ep03.mp4", "ep04.mp4~", "ep05.crdownload", "notes.txt"):
        (tmp_path / name).write_bytes(b"y")
    series = tmp_path / "series"
    series.mkdir()
    (series / "e1.mp4").write_bytes(b"z")
    (series / "e2.mp4.part").write_bytes(b"z")
    assert settler.scan() == ([], 1)  # ep01 settling; the series holds a .part: not a candidate yet
    now[0] = 9
    (tmp_path / "ep01.mp4").write_bytes(b"x" * 20)  # it grew: the clock restarts
    (series / "e2.mp4.part").rename(series / "e2.mp4")
    assert settler.scan() == ([], 2)
    now[0] = 18.9
    assert settler.scan() == ([], 2)
    now[0] = 19
    assert settler.scan() == (["ep01.mp4", "series"], 0)


def test_orphaned_claim_is_adopted_by_exactly_one_daemon(tmp_path):
    db = tmp_path / "state.sqlite"
    dead = Owner("dead", 2**22 + 12345, os.uname().nodename)  # a pid that is not running here
    a, b = Owner("a", os.getpid(), dead.host), Owner("b", os.getpid(), dead.host)
    journal = Journal(db)
    journal.register(dead)
    journal.register(a)
    journal.add_claims(dead, [("ep01.mp4", "", "ep01")], [MARKET])
    assert not pid_alive(dead.pid)
    orphans = journal.orphans(a, lease=60)
    assert [c.file for c in orphans] == ["ep01.mp4"]
    other = Journal(db)
    assert journal.adopt(orphans[0], a) is True
    assert other.adopt(orphans[0], b) is False  # the compare-and-set saw a's takeover
    assert journal.orphans(b, lease=60) == []  # a is alive: nothing to adopt
    other.close()
    journal.close()


def test_sweep_removes_temporaries_of_dead_writers_only(tmp_path):
    market = tmp_path / MARKET
    market.mkdir()
    dead = market / f".ep01.mp4.{2**22 + 12345}.tmp"
    live = market / f".ep02.mp4.{os.getpid()}.tmp"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    assert sweep_temporaries(tmp_path) == 1
    assert not dead.exists() and live.exists()


def test_status_without_a_journal_is_a_usage_error(tmp_path):
    proc = subprocess.run([*LOCPIPE, "status", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "no journal" in proc.stderr


# --------------------------------------------------------------------------- drills (real pipeline)


@pytest.mark.slow
def test_growing_file_is_claimed_only_after_it_settles(tmp_path, episode, work, daemons):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    settle = 2.0
    daemon = daemons(tmp_path / "daemon.log", watch_args(inbox, out, work, "--settle", str(settle)))
    data = episode.read_bytes()
    target = inbox / "ep01.mp4"
    step = len(data) // 8 + 1
    with open(target, "wb") as fh:  # a producer copying over ~4 s, slower than the poll
        for i in range(0, len(data), step):
            fh.write(data[i:i + step])
            fh.flush()
            last_write = time.time()
            time.sleep(0.5)
            assert target.exists() and not rows(inbox, "claims"), "claimed while still growing"
    wait_for(lambda: (inbox / ".done" / "ep01.mp4").exists(), RUN_TIMEOUT, "ep01 to be done", daemon)
    claim = rows(inbox, "claims")[0]
    assert claim["claimed_at"] >= last_write + settle - 0.1
    assert (claim["state"], claim["attempts"]) == ("done", 1)
    assert (inbox / ".done" / "ep01.mp4").read_bytes() == data
    assert out_files(out) == EXPORTS
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait(60) == 0


@pytest.mark.slow
def test_kill_9_during_render_then_restart_completes_without_duplicates(tmp_path, episode, work, daemons):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(episode, inbox / "ep01.mp4")
    drill = ("--distributor", "drill-kill")  # its own render key: this render is not cached
    daemon = daemons(tmp_path / "daemon.log", watch_args(inbox, out, work, *drill))
    wait_for(lambda: stage_is(inbox, f"{MARKET}/render:start"), RUN_TIMEOUT, "the render to start", daemon)
    time.sleep(1.5)  # ffmpeg is writing the export into the stage cache
    worker_group = rows(inbox, "claims")[0]["worker_pgid"]
    assert worker_group and group_members(worker_group), "no worker running during the render"
    daemon.proc.kill()
    daemon.wait(10)
    assert not list(out.rglob(f"{MARKET}/ep01.mp4")), "exported before the render finished?"

    proc = run_once(inbox, out, work, *drill)
    assert proc.returncode == 0, proc.stderr
    assert "re-queued ep01.mp4" in proc.stderr
    assert not group_members(worker_group), "the killed daemon's render kept running"
    assert (inbox / ".done" / "ep01.mp4").exists() and not any((inbox / ".processing").iterdir())
    assert out_files(out) == EXPORTS  # exactly one export per unit; no *.tmp, no partial files
    assert abs(probe(out / MARKET / "ep01.mp4").duration - probe(episode).duration) <= 0.1
    units = json.loads((out / "manifest.json").read_text())["units"]
    assert [(u["episode"], u["market"], u["status"]) for u in units] == [("ep01", MARKET, "ok")]
    stages = {s["stage"]: s["cached"] for s in units[0]["stages"]}
    assert stages["translate"] and not stages["render"]  # resumed from the cache; the render redone
    claim = rows(inbox, "claims")[0]
    assert (claim["state"], claim["attempts"]) == ("done", 2)  # the killed attempt counts


@pytest.mark.slow
def test_poison_file_fails_after_three_attempts_while_good_episode_completes(tmp_path, episode, work):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(episode, inbox / "ep01.mp4")
    (inbox / "notes.mp4").write_text("producer notes: re-cut ep04 next week\n" * 10)

    proc = run_once(inbox, out, work)
    assert proc.returncode == 3, proc.stderr  # --once: some episode failed
    for n in (1, 2, 3):
        assert proc.stderr.count(f"attempt {n}/3: notes.mp4") == 1
    assert "attempt 2/3: ep01.mp4" not in proc.stderr
    failed = inbox / ".failed" / "notes.mp4"
    reason = json.loads(failed.with_name("notes.mp4.reason.json").read_text())
    assert failed.exists() and reason["attempts"] == 3 and reason["stage"] == "ingest"
    assert "text file" in reason["error"] and reason["log_tail"]
    assert (inbox / ".done" / "ep01.mp4").exists()
    assert [p.name for p in inbox.iterdir() if not p.name.startswith(".")] == []  # the inbox emptied
    assert out_files(out) == EXPORTS

    snap = json.loads(status(inbox, "--json").stdout)
    assert snap["counts"]["units"] == {"done": 1, "failed": 1}
    claims = {c["file"]: c for c in snap["claims"]}
    assert (claims["notes.mp4"]["state"], claims["notes.mp4"]["attempts"]) == ("failed", 3)
    assert (claims["ep01.mp4"]["state"], claims["ep01.mp4"]["attempts"]) == ("done", 1)
    table = status(inbox).stdout
    assert "notes.mp4" in table and "failed" in table and "done" in table


@pytest.mark.slow
def test_two_daemons_on_one_inbox_never_process_a_file_twice(tmp_path, work, daemons):
    inbox, out, staging = tmp_path / "inbox", tmp_path / "out", tmp_path / "staging"
    inbox.mkdir()
    staging.mkdir()
    names = [f"c{i}.mp4" for i in range(1, 4)]
    for name in names:
        make_clip(staging / name, seconds=2.0)
        os.rename(staging / name, inbox / name)  # arrives complete
    first = daemons(tmp_path / "a.log", watch_args(inbox, out, work, "--once"))
    second = daemons(tmp_path / "b.log", watch_args(inbox, out, work, "--once", "--no-events"))
    assert first.wait(RUN_TIMEOUT) == 0 and second.wait(RUN_TIMEOUT) == 0
    logs = first.text() + second.text()
    for name in names:
        assert logs.count(f"attempt 1/3: {name}") == 1, logs
    assert "attempt 2/3" not in logs
    claims = rows(inbox, "claims")
    assert sorted(c["file"] for c in claims) == names
    assert all((c["state"], c["attempts"]) == ("done", 1) for c in claims)
    assert sorted(p.name for p in (inbox / ".done").iterdir()) == names
    assert {f"{MARKET}/{n}" for n in names} <= out_files(out)


@pytest.mark.slow
def test_sigterm_finishes_the_stage_records_state_and_exits_0(tmp_path, episode, work, daemons):
    inbox, out = tmp_path / "inbox", tmp_path / "out"
    inbox.mkdir()
    shutil.copy(episode, inbox / "ep01.mp4")
    drill = ("--distributor", "drill-term")
    daemon = daemons(tmp_path / "daemon.log", watch_args(inbox, out, work, *drill))
    wait_for(lambda: stage_is(inbox, f"{MARKET}/render:start"), RUN_TIMEOUT, "the render to start", daemon)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.wait(120) == 0
    log = daemon.text()
    assert "stopping at this stage boundary" in log
    claim = rows(inbox, "claims")[0]
    assert (claim["state"], claim["attempts"], claim["daemon"]) == ("queued", 0, None)
    assert (inbox / ".processing" / "ep01.mp4").exists()
    snap = json.loads(status(inbox, "--json").stdout)
    assert snap["counts"]["claims"] == {"queued": 1}
    assert not [d for d in snap["daemons"] if d["alive"]]
    assert not (out / MARKET / "ep01.mp4").exists()

    proc = run_once(inbox, out, work, *drill)  # the next start resumes
    assert proc.returncode == 0, proc.stderr
    unit = json.loads((out / "manifest.json").read_text())["units"][0]
    assert {s["stage"]: s["cached"] for s in unit["stages"]}["render"]  # the stage finished before exit
    assert out_files(out) == EXPORTS
    assert rows(inbox, "claims")[0]["attempts"] == 1
