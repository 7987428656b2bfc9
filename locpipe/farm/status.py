"""What ``locpipe farm status`` shows: every submitted unit and what it is doing, from the records
on the shared path and the leases in Redis.

A unit's state, in the user's words:

* ``queued``: submitted (or between phases), no worker on it;
* ``running``: a worker runs a phase of it now: its node, since when, and the age of that
  node's lease (seconds since its last heartbeat: under ``lease_ttl`` while it lives);
* ``retrying``: a phase failed and waits for its back-off;
* ``done``: exported (``ok``);
* ``dead-lettered``: attempts used up, see its dead-letter record;
* ``lost``: its record says running but the node's lease has expired (the worker is gone);
  the reaper requeues its message, and another worker takes it over.

Without a reachable broker the records still tell queued/retrying/done/dead-lettered, and a
running unit stays ``running`` (its lease cannot be checked).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime

from pydantic import BaseModel

from locpipe.farm.state import FarmState, UnitRecord

log = logging.getLogger(__name__)

STATES = ("queued", "running", "retrying", "done", "dead-lettered", "lost")
_BY_STATUS = {"queued": "queued", "retry": "retrying", "ok": "done", "failed": "dead-lettered"}


class UnitView(BaseModel):
    unit: str
    role: str
    episode: str
    market: str
    distributor: str
    state: str
    phase: str
    node: str
    worker: str
    since: str
    #: seconds since the node's last heartbeat (running/lost units with a known node)
    lease_age: float | None = None
    attempts: dict[str, int]
    commits: int
    phase_seconds: dict[str, float]
    error: str
    updated: str


class RequeuedView(BaseModel):
    tag: str
    unit: str
    task: str
    holder: str | None


class Snapshot(BaseModel):
    out: str
    counts: dict[str, int]
    units: list[UnitView]
    dead: list[dict]
    #: Celery nodes whose lease is alive, None when the broker is not reachable
    workers: list[str] | None
    queues: dict[str, int] | None
    #: what this status call's reaper requeued (units of workers that are gone)
    requeued: list[RequeuedView]


def unit_state(rec: UnitRecord, live: dict[str, float] | None) -> str:
    """The user-facing state of a record given the live nodes (None: broker not reachable)."""
    if rec.status != "running":
        return _BY_STATUS.get(rec.status, rec.status)
    if live is None or not rec.node:
        return "running"
    return "running" if rec.node in live else "lost"


def _lease_age(rec: UnitRecord, beats: dict[str, dict], now: float) -> float | None:
    beat = beats.get(rec.node, {}).get("beat") if rec.node else None
    if rec.status != "running" or beat is None:
        return None
    return round(max(0.0, now - float(beat)), 1)


def _since(rec: UnitRecord) -> str:
    if not rec.started:
        return rec.submitted
    try:
        return datetime.fromisoformat(rec.started).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return rec.started


def snapshot(state: FarmState, client, *, reap: bool, lease_ttl: float) -> Snapshot:
    """Every unit record with its state; with a broker client also the leases, the queue
    lengths, and (``reap``) a sweep of the reaper, so a status call alone recovers a dead
    worker's units even when no other worker runs a reaper."""
    from locpipe.farm import lease
    from locpipe.farm.settings import QUEUES

    requeued: list[lease.Requeued] = []
    live = beats = queues = None
    if client is not None:
        try:
            if reap:
                requeued = lease.reap(client, lease_ttl=lease_ttl)
            live, beats = lease.live_nodes(client), lease.last_beats(client)
            queues = {q: int(client.llen(q)) for q in QUEUES}
        except Exception as exc:
            log.warning("broker not reachable (%s): units listed from their records only", exc)
            live = beats = queues = None
    now = time.time()
    views = [UnitView(unit=r.unit_id, role="asr" if r.unit_id.endswith("--asr") else r.role, episode=r.episode,
                      market=r.market, distributor=r.distributor,
                      state=unit_state(r, live), phase=r.phase, node=r.node, worker=r.worker, since=_since(r),
                      lease_age=_lease_age(r, beats or {}, now), attempts=r.attempts, commits=r.commits,
                      phase_seconds=r.phase_seconds, error=r.error, updated=r.updated)
             for r in state.records()]
    counts: dict[str, int] = {}
    for v in views:
        if v.role != "asr":
            counts[v.state] = counts.get(v.state, 0) + 1
    return Snapshot(out=str(state.out_dir), counts=counts, units=views, dead=state.dead_letters(),
                    workers=sorted(live) if live is not None else None, queues=queues,
                    requeued=[RequeuedView(tag=r.tag, unit=r.unit, task=r.task, holder=r.holder) for r in requeued])
