"""Leases: a dead worker's units go back to the queue in seconds, not after the visibility timeout.

Why: with ``acks_late`` on Redis, a message delivered to a worker that then dies (SIGKILL,
OOM, a preempted node) stays in kombu's ``unacked`` hash until the visibility timeout (6 h,
it must exceed the longest render) hands it out again. RabbitMQ would redeliver when the
consumer's connection drops, but it is one more server to run, not installed here, and
our exactly-once protocol (unit locks, records, idempotent publish) does not need it. So
Redis stays the broker, and every worker holds a *lease*:

* **heartbeat**: a thread in the worker's main process renews ``locpipe:farm:worker:<node>``
  (TTL ``lease_ttl``) every ``lease_ttl/3`` s, and records its beat in ``locpipe:farm:nodes``;
  the lease dies with the process, whatever kills it;
* **holders**: when the worker's consumer receives a message (``task_received``: running
  units, and retries waiting for their countdown) it records ``delivery tag -> node`` in
  ``locpipe:farm:held``;
* **reaper**: every ``reap_interval`` s in every worker (and once per ``locpipe farm status``)
  each message in ``unacked`` whose holder's lease has expired (or that no worker claimed
  within ``lease_ttl``) is moved back to the front of its queue by one Lua script: remove
  from ``unacked`` + push, atomic, only if the message and its holder are still the ones
  read, so of several reapers exactly one requeues it and a message acked meanwhile is
  left alone. The requeued message is the original (its chain links ride in it), so the
  rest of the episode follows as if nothing happened.

A requeued unit runs again on another worker under the unit protocol (``phases``): the
dead worker's ``flock`` died with it, its attempt counted, exports are renamed into place,
the record is the commit point, and the ledger gives the export the same payload again
(``watermark.ledger``), so the effect stays exactly once. A reaper acts only when the Redis
server has been up and its own heartbeat healthy for a whole ``lease_ttl``: after a broker
restart every lease has "expired", and nothing must be requeued until live workers had the
time to renew theirs.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

log = logging.getLogger(__name__)

WORKER_PREFIX = "locpipe:farm:worker:"
NODES = "locpipe:farm:nodes"
HELD = "locpipe:farm:held"
#: capped list of requeue events (newest first), for ``farm status`` and the benchmark
REQUEUED = "locpipe:farm:requeued"
#: kombu's Redis transport keys (no global_keyprefix is configured)
UNACKED, UNACKED_INDEX = "unacked", "unacked_index"
#: kombu's separator of priority queues (``<queue>\x06\x16<priority>``)
PRIORITY_SEP = "\x06\x16"

# KEYS: unacked, unacked_index, held, queue, requeued. ARGV: tag, expected raw unacked entry,
# expected raw held entry ('' = none), payload to push, event
_RESTORE = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
if (redis.call('HGET', KEYS[3], ARGV[1]) or '') ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('RPUSH', KEYS[4], ARGV[4])
redis.call('LPUSH', KEYS[5], ARGV[5])
redis.call('LTRIM', KEYS[5], 0, 199)
return 1
"""
# KEYS: held, unacked. ARGV: tag, expected raw held entry: forget a holder whose message is gone
_FORGET = """
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 then return 0 end
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
return redis.call('HDEL', KEYS[1], ARGV[1])
"""


def client_for(url: str):
    import redis

    return redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# --------------------------------------------------------------------------- pure decisions


@dataclass(frozen=True)
class Delivery:
    """A delivered, unacknowledged message as the reaper sees it."""

    tag: str
    delivered_at: float
    holder: str | None  # node name, None when no worker recorded it


def lost(deliveries: list[Delivery], live: set[str], now: float, grace: float) -> list[Delivery]:
    """The deliveries nobody alive holds: their holder's lease expired, or no worker claimed
    them within ``grace`` seconds of delivery (it died between delivery and ``task_received``)."""
    return [d for d in deliveries
            if (d.holder is not None and d.holder not in live)
            or (d.holder is None and now - d.delivered_at > grace)]


def requeue_payload(raw_entry: str) -> tuple[str, str, dict]:
    """(queue list, payload JSON to push, message) from a raw ``unacked`` entry
    ``[message, exchange, routing_key]``; marked redelivered as kombu does."""
    message, _exchange, routing_key = json.loads(raw_entry)
    message.setdefault("headers", {})["redelivered"] = True
    message.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
    priority = int(message["properties"].get("priority") or 0)
    queue = routing_key if not priority else f"{routing_key}{PRIORITY_SEP}{priority}"
    return queue, json.dumps(message), message


def describe_message(message: Mapping) -> dict:
    """Task name and unit id of a Celery message (protocol 2), for logs and status."""
    headers = message.get("headers") or {}
    unit = ""
    try:
        import base64

        body = json.loads(base64.b64decode(message["body"])) if message.get("properties", {}).get(
            "body_encoding") == "base64" else json.loads(message["body"])
        unit = unit_of(body[0])
    except (KeyError, IndexError, TypeError, ValueError):
        pass
    return {"task": headers.get("task", ""), "task_id": headers.get("id", ""), "unit": unit}


# --------------------------------------------------------------------------- Redis side


def live_nodes(client) -> dict[str, float]:
    """node -> its last beat (epoch seconds) for every worker whose lease has not expired."""
    names = [_text(k)[len(WORKER_PREFIX):] for k in client.scan_iter(match=WORKER_PREFIX + "*", count=500)]
    beats = client.hmget(NODES, names) if names else []
    return {n: float(json.loads(b)["beat"]) if b else 0.0 for n, b in zip(names, beats)}


def last_beats(client) -> dict[str, dict]:
    """node -> its last heartbeat record (also for workers whose lease expired: "last seen")."""
    return {_text(k): json.loads(v) for k, v in client.hgetall(NODES).items()}


def unit_of(args) -> str:
    """The unit id a farm task works on, from its first argument (a unit or episode spec)."""
    spec = args[0] if args and isinstance(args[0], Mapping) else {}
    return spec.get("unit_id") or (f"{spec['episode']}--asr" if "episode" in spec else "")


def record_delivery(client, node: str, tag: str, unit: str, task: str) -> None:
    """``task_received``: this node holds this delivery (until it is acked or requeued)."""
    client.hset(HELD, tag, json.dumps({"node": node, "unit": unit, "task": task, "received": time.time()}))


def broker_uptime(client) -> float:
    return float(client.info("server").get("uptime_in_seconds", 0))


@dataclass(frozen=True)
class Requeued:
    tag: str
    unit: str
    task: str
    holder: str | None
    queue: str


def reap(client, *, lease_ttl: float, now: float | None = None) -> list[Requeued]:
    """Requeue every delivery whose holder is gone (see the module docstring); forget holder
    entries of messages that were acked. Returns what was requeued."""
    now = time.time() if now is None else now
    if broker_uptime(client) < lease_ttl:  # just restarted: live workers have not renewed yet
        return []
    raw_unacked = {_text(k): _text(v) for k, v in client.hgetall(UNACKED).items()}
    index = {_text(k): float(v) for k, v in client.zrange(UNACKED_INDEX, 0, -1, withscores=True)}
    raw_held = {_text(k): _text(v) for k, v in client.hgetall(HELD).items()}
    forget = client.register_script(_FORGET)
    for tag, entry in raw_held.items():
        if tag not in raw_unacked:
            forget(keys=[HELD, UNACKED], args=[tag, entry])
    deliveries = [Delivery(tag, index.get(tag, now), json.loads(raw_held[tag])["node"] if tag in raw_held else None)
                  for tag in raw_unacked]
    alive = set(live_nodes(client))
    restore = client.register_script(_RESTORE)
    done = []
    for d in lost(deliveries, alive, now, grace=lease_ttl):
        queue, payload, message = requeue_payload(raw_unacked[d.tag])
        info = describe_message(message)
        event = json.dumps({"time": now, "tag": d.tag, "unit": info["unit"], "task": info["task"],
                            "holder": d.holder, "by": f"{socket.gethostname()}:{os.getpid()}"})
        if restore(keys=[UNACKED, UNACKED_INDEX, HELD, queue, REQUEUED],
                   args=[d.tag, raw_unacked[d.tag], raw_held.get(d.tag, ""), payload, event]):
            log.warning("requeued %s %s (delivery %s): its worker %s is gone", info["task"], info["unit"] or "?",
                        d.tag, d.holder or "(none claimed it)")
            done.append(Requeued(d.tag, info["unit"], info["task"], d.holder, queue))
    return done


# --------------------------------------------------------------------------- the worker's threads


class Lease:
    """A worker's lease: heartbeat and reaper threads of its main process (daemon threads:
    they die with the process, which is the point)."""

    def __init__(self, url: str, node: str, *, ttl: float, reap_interval: float):
        self.url, self.node, self.ttl, self.reap_interval = url, node, ttl, reap_interval
        self.started = time.time()
        self.healthy_since: float | None = None
        self._stop = threading.Event()
        self.client = client_for(url)

    def beat(self) -> None:
        now = time.time()
        record = json.dumps({"node": self.node, "host": socket.gethostname(), "pid": os.getpid(),
                             "started": self.started, "beat": now})
        pipe = self.client.pipeline()
        pipe.set(WORKER_PREFIX + self.node, record, px=int(self.ttl * 1000))
        pipe.hset(NODES, self.node, record)
        pipe.execute()

    def start(self) -> Lease:
        """First beat now (the lease exists before any message is taken), then the threads."""
        try:
            self.beat()
            self.healthy_since = time.time()
        except Exception as exc:  # the broker may still be coming up: the thread keeps trying
            log.warning("lease of %s not written yet (%s)", self.node, exc)
        threading.Thread(target=self._beat_loop, name="locpipe-lease-heartbeat", daemon=True).start()
        threading.Thread(target=self._reap_loop, name="locpipe-lease-reaper", daemon=True).start()
        log.info("lease of %s: renewed every %.1fs (TTL %.0fs); reaper every %.0fs", self.node, self.ttl / 3,
                 self.ttl, self.reap_interval)
        return self

    def stop(self) -> None:
        """Warm shutdown: stop renewing and drop the lease (kombu requeues our unacked messages)."""
        self._stop.set()
        try:
            self.client.delete(WORKER_PREFIX + self.node)
        except Exception:
            pass

    def _beat_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.beat()
                if self.healthy_since is None:
                    self.healthy_since = time.time()
            except Exception as exc:
                if self.healthy_since is not None:
                    log.warning("lease of %s not renewed: %s", self.node, exc)
                self.healthy_since = None

    def _reap_loop(self) -> None:
        while not self._stop.wait(self.reap_interval):
            healthy = self.healthy_since
            if healthy is None or time.time() - healthy < self.ttl:
                continue  # our own view of the broker is not trustworthy yet
            try:
                reap(self.client, lease_ttl=self.ttl)
            except Exception as exc:
                log.warning("reaper of %s: %s", self.node, exc)


__all__ = ["Lease", "reap", "lost", "Delivery", "live_nodes", "last_beats", "record_delivery", "client_for",
           "requeue_payload", "describe_message"]
