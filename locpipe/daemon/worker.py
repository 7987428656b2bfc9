"""One attempt at one episode, in a spawned child process the daemon can outlive.

Why a child: a segfault in a native library, the OOM killer or a wedged ffmpeg takes the
child, not the daemon, and the daemon's SIGTERM handling stays responsive while a render
runs. Spawned, not forked, for the same reason as ``core.batch``: ONNX Runtime and
CTranslate2 thread pools do not survive ``fork``.

The child leads its own process group (so the daemon can stop it together with its ffmpeg),
dies with the daemon (``PR_SET_PDEATHSIG``, so a ``kill -9`` of the daemon leaves no worker
exporting behind a restarted one), and checks for a stop request at every stage boundary (each
progress event): on "stop" it exits with ``CHECKPOINT_EXIT`` right there, when every finished
stage is already in the stage cache and nothing is half-written outside a temporary directory.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from locpipe.core.reports import EpisodeReport
from locpipe.core.settings import RunSettings

log = logging.getLogger(__name__)

#: the child stopped at a stage boundary because the daemon asked it to (EX_TEMPFAIL)
CHECKPOINT_EXIT = 75
#: how long a child that sent its report may take to exit before it is killed
EXIT_GRACE = 30.0


@dataclass(frozen=True)
class ChildLogging:
    level: str
    fmt: str
    #: the attempt's log, appended to; its tail goes into reason.json
    file: Path


@dataclass
class Attempt:
    """How an attempt ended: a report, a checkpoint on request, or a dead child."""

    report: EpisodeReport | None = None
    exitcode: int | None = None
    checkpointed: bool = False
    #: the last (market, stage) the child announced, for errors when it died
    market: str = ""
    stage: str = ""


#: called by the wait loop between messages; returns None, "stop" (checkpoint) or "kill"
Tick = Callable[[], str | None]
#: (market, stage, status) progress events of the attempt
OnEvent = Callable[[str, str, str], None]


def run_attempt(path: Path, settings: RunSettings, logging_cfg: ChildLogging, *, on_started: Callable[[int], None],
                on_event: OnEvent, tick: Tick, poll: float = 0.5) -> Attempt:
    """Run ``run_episode(path, settings)`` in a child; return when it has exited."""
    ctx = mp.get_context("spawn")
    conn, child_conn = ctx.Pipe(duplex=True)
    proc = ctx.Process(target=_child_main, args=(path, settings, child_conn, os.getpid(), logging_cfg),
                       name=f"locpipe-{path.name}", daemon=True)
    proc.start()
    child_conn.close()
    _set_group(proc.pid)
    on_started(proc.pid)
    attempt = Attempt()
    try:
        _pump(proc, conn, attempt, on_event, tick, poll)
    finally:
        conn.close()
        proc.join(EXIT_GRACE)
        kill_group(proc.pid)  # anything left behind by the child (an ffmpeg it started)
        proc.join(5)
    attempt.exitcode = proc.exitcode
    attempt.checkpointed = attempt.report is None and proc.exitcode == CHECKPOINT_EXIT
    return attempt


def _pump(proc, conn, attempt: Attempt, on_event: OnEvent, tick: Tick, poll: float) -> None:
    """Relay progress until the child reports or exits; pass stop/kill requests on."""
    stop_sent = False
    while True:
        action = tick()
        if action == "kill":
            kill_group(proc.pid)
        elif action == "stop" and not stop_sent:
            stop_sent = True
            try:
                conn.send("stop")
            except OSError:
                pass
        try:
            if not conn.poll(poll):
                if not proc.is_alive() and not conn.poll(0):
                    return
                continue
            kind, payload = conn.recv()
        except (EOFError, OSError):
            return
        if kind == "report":
            attempt.report = payload
            return
        _episode, market, stage, status = payload
        attempt.market, attempt.stage = market, stage
        on_event(market, stage, status)


def _set_group(pid: int) -> None:
    """Make the child a process-group leader from this side too (whichever runs first wins)."""
    try:
        os.setpgid(pid, pid)
    except OSError:
        pass


def group_members(pgid: int) -> list[int]:
    """Processes still in process group ``pgid`` (Linux /proc; empty elsewhere)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_group(pgid: int | None) -> bool:
    """SIGKILL process group ``pgid`` if it still has live members; True if it did."""
    if not pgid or pgid == os.getpgrp() or not group_members(pgid):
        return False
    try:
        os.killpg(pgid, signal.SIGKILL)
        return True
    except OSError:
        return False


def kill_stale_worker(pgid: int | None) -> bool:
    """After a daemon died: stop its worker group if it is still ours (a locpipe child or ffmpeg).

    The check on the command line guards against a recycled process-group id.
    """
    if not pgid:
        return False
    for pid in group_members(pgid):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"ffmpeg" in cmdline or b"multiprocessing" in cmdline:
            return kill_group(pgid)
    return False


# --------------------------------------------------------------------------- child side


def _child_main(path: Path, settings: RunSettings, conn, parent_pid: int, logging_cfg: ChildLogging) -> None:
    _set_group(0)
    _die_with_parent(parent_pid)
    _setup_logging(logging_cfg)
    from locpipe.core.logs import log_context
    from locpipe.core.pipeline import run_episode
    from locpipe.core.resources import Resources

    def progress(episode: str, market: str, stage: str, status: str) -> None:
        conn.send(("event", (episode, market, stage, status)))
        if _stop_requested(conn):
            with log_context(episode=episode, market=market, stage=stage):
                log.info("stopping at this stage boundary (%s): resumes from the stage cache", status)
            # SystemExit passes the pipeline's `except Exception` and runs the normal exit path
            raise SystemExit(CHECKPOINT_EXIT)

    report = run_episode(path, settings, progress, Resources())
    conn.send(("report", report))
    conn.close()


def _stop_requested(conn) -> bool:
    try:
        while conn.poll(0):
            if conn.recv() == "stop":
                return True
    except (EOFError, OSError):  # the daemon is gone: stop here too
        return True
    return False


def _die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this child when the daemon dies (Linux); no-op elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the daemon died before the line above took effect
        os._exit(1)


def _setup_logging(cfg: ChildLogging) -> None:
    from locpipe.core.logs import ContextFilter, HumanFormatter, setup_logging

    setup_logging(cfg.level, cfg.fmt)
    root = logging.getLogger()
    for handler in root.handlers:  # the console keeps the daemon's level ...
        handler.setLevel(cfg.level.upper())
    root.setLevel(min(root.level, logging.INFO))  # ... the attempt log keeps INFO for reason.json
    cfg.file.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(cfg.file, encoding="utf-8")
    handler.addFilter(ContextFilter())
    handler.setFormatter(HumanFormatter())
    root.addHandler(handler)
