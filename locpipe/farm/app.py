"""The Celery app of the render farm, built from ``FarmSettings`` (no module-level broker URL).

Reliability settings and why:

* ``task_acks_late`` + ``task_reject_on_worker_lost``: a unit is acknowledged only after it
  finished; a pool process killed mid-unit (OOM, SIGKILL) puts the message back at once, and a
  whole worker (or machine) that dies leaves it unacknowledged, so Redis hands it out again
  after ``visibility_timeout``;
* ``worker_prefetch_multiplier=1``: a worker holds only the unit it runs, so a slow render
  does not sit on units another node could take;
* a whole worker (or machine) that dies is noticed through its lease
  (``locpipe.farm.lease``: a heartbeat key with a TTL, renewed by a thread of the worker's
  main process, and a reaper in every worker that requeues the messages held by workers
  whose lease expired): its units run again elsewhere within ``lease_ttl + reap_interval``
  seconds, not after the visibility timeout;
* the visibility timeout stays above the longest stage (see ``FarmSettings``), as a
  backstop; retries use back-off below it; the broker connection is retried without limit
  and publishing (the next phase of a chain, a retry) is retried for minutes, so a Redis
  restart delays work only.

Routing: ``asr`` (GPU nodes), ``tts`` and ``render`` (CPU nodes); a unit is the chain
asr(episode) -> [tts(unit) -> render(unit)] for each market.
"""

from __future__ import annotations

import logging

from celery import Celery, chain, group

from locpipe.core.resources import Resources
from locpipe.farm import phases
from locpipe.farm.phases import Outcome
from locpipe.farm.settings import FarmSettings
from locpipe.farm.units import DrillSpec, EpisodeSpec, UnitSpec

log = logging.getLogger(__name__)

TASK_ASR = "locpipe.farm.asr"
TASK_TTS = "locpipe.farm.tts"
TASK_RENDER = "locpipe.farm.render"
TASK_DRILL = "locpipe.farm.drill"
#: Redis list of dead-letter records (the files under OUT/.locpipe-farm/dead/ are the record)
DEAD_LIST = "locpipe:farm:dead"


class UnitDeadLettered(Exception):
    """The unit used up its attempts: the chain stops here; see its dead-letter record."""


def celery_config(settings: FarmSettings) -> dict:
    transport = {
        "visibility_timeout": int(settings.visibility_timeout),
        # sweep for expired units every restore_interval seconds (not every 10th sweep)
        "unacked_restore_interval": max(1, int(settings.restore_interval)),
        "unacked_restore_throttle": 1,
    }
    return {
        "broker_url": settings.broker_url,
        "result_backend": settings.broker_url,
        "broker_transport_options": transport,
        "result_backend_transport_options": {"visibility_timeout": int(settings.visibility_timeout)},
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        "result_backend_always_retry": True,
        "result_backend_max_retries": 60,
        "result_expires": 7 * 24 * 3600,
        "task_publish_retry": True,
        "task_publish_retry_policy": {"max_retries": 60, "interval_start": 0.5, "interval_step": 1.0,
                                      "interval_max": 5.0},
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # a Redis blip must not kill a 10-minute render: it finishes, its ack may be lost, and
        # the redelivered message is a no-op (Celery 6 will default to cancelling)
        "worker_cancel_long_running_tasks_on_connection_loss": False,
        "worker_max_tasks_per_child": settings.max_tasks_per_child,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "task_routes": {TASK_ASR: {"queue": "asr"}, TASK_TTS: {"queue": "tts"}, TASK_RENDER: {"queue": "render"},
                        TASK_DRILL: {"queue": "render"}},
        "task_default_queue": "render",
        "task_track_started": True,
    }


def make_app(settings: FarmSettings) -> Celery:
    """A Celery app for these settings with the farm's tasks registered."""
    app = Celery("locpipe", set_as_current=False)
    app.conf.update(celery_config(settings))
    # each pool process gets its own copy (made before the fork, empty) and fills it on first use,
    # so a pool process that runs several units loads each model once
    resources = Resources()

    def finish(task, outcome: Outcome) -> str:
        if outcome.kind in ("retry", "busy"):
            raise task.retry(countdown=outcome.countdown)
        if outcome.kind == "dead":
            _push_dead(settings, task.request.id, outcome.message)
            raise UnitDeadLettered(outcome.message)
        return outcome.kind

    @app.task(name=TASK_ASR, bind=True, max_retries=None)
    def asr(self, episode: dict) -> str:
        return finish(self, phases.asr_phase(settings, EpisodeSpec.model_validate(episode), resources,
                                             node=self.request.hostname or ""))

    @app.task(name=TASK_TTS, bind=True, max_retries=None)
    def tts(self, unit: dict) -> str:
        return finish(self, phases.tts_phase(settings, UnitSpec.model_validate(unit), resources,
                                             node=self.request.hostname or ""))

    @app.task(name=TASK_RENDER, bind=True, max_retries=None)
    def render(self, unit: dict) -> str:
        return finish(self, phases.render_phase(settings, UnitSpec.model_validate(unit), resources,
                                                node=self.request.hostname or ""))

    @app.task(name=TASK_DRILL, bind=True, max_retries=None)
    def drill(self, spec: dict) -> str:
        return finish(self, phases.drill_phase(settings, DrillSpec.model_validate(spec),
                                               node=self.request.hostname or ""))

    _connect_lease(app, settings)
    return app


def _connect_lease(app: Celery, settings: FarmSettings) -> None:
    """The worker's lease (``locpipe.farm.lease``): started in the worker's main process before
    it consumes; every message it receives is recorded as held by it; dropped on warm shutdown."""
    from celery import signals

    from locpipe.farm import lease as leases

    held: dict[str, leases.Lease] = {}

    @signals.worker_init.connect(weak=False)
    def start_lease(sender=None, **_kw) -> None:
        if getattr(sender, "app", None) is app:
            held["lease"] = leases.Lease(settings.broker_url, sender.hostname, ttl=settings.lease_ttl,
                                         reap_interval=settings.reap_interval).start()

    @signals.task_received.connect(weak=False)
    def record(sender=None, request=None, **_kw) -> None:
        lease = held.get("lease")
        if lease is None or request is None:
            return
        try:
            leases.record_delivery(lease.client, lease.node, request.message.delivery_tag, leases.unit_of(request.args),
                                   request.task_name)
        except Exception as exc:  # unrecorded: after lease_ttl a reaper requeues it even though we live; the
            # duplicate finds the unit locked (busy) or done (no-op): wasted, never wrong
            log.warning("delivery of %s not recorded in the lease table: %s", request.task_name, exc)

    @signals.worker_shutdown.connect(weak=False)
    def stop_lease(sender=None, **_kw) -> None:
        lease = held.pop("lease", None)
        if lease is not None:
            lease.stop()


def episode_signature(app: Celery, episode: EpisodeSpec):
    """asr(episode), then per market in parallel: tts -> render of each unit; with several
    distributors tts -> render of the market's A/B base -> the distributors' copy units in parallel."""
    def sig(task: str, unit: UnitSpec):
        return app.signature(task, args=(unit.model_dump(mode="json"),), immutable=True)

    per_market = []
    for base, units in episode.market_plans():
        if base is None:
            per_market += [chain(sig(TASK_TTS, u), sig(TASK_RENDER, u)) for u in units]
        else:
            copies = [sig(TASK_RENDER, u) for u in units]
            per_market.append(chain(sig(TASK_TTS, base), sig(TASK_RENDER, base),
                                    group(copies) if len(copies) > 1 else copies[0]))
    asr = app.signature(TASK_ASR, args=(episode.model_dump(mode="json"),), immutable=True)
    return chain(asr, group(per_market)) if len(per_market) > 1 else chain(asr, per_market[0])


def submit_episode(app: Celery, episode: EpisodeSpec) -> str:
    """Enqueue one episode's chain; returns the id of its asr task."""
    sig = episode_signature(app, episode)
    result = sig.apply_async()
    first = result
    while getattr(first, "parent", None) is not None:
        first = first.parent
    return first.id


def submit_drill(app: Celery, spec: DrillSpec, queue: str = "render") -> str:
    return app.signature(TASK_DRILL, args=(spec.model_dump(mode="json"),), queue=queue).apply_async().id


def _push_dead(settings: FarmSettings, task_id: str, error: str) -> None:
    """Best effort: the dead-letter file is the record; the Redis list is for dashboards."""
    import json

    try:
        import redis

        client = redis.Redis.from_url(settings.broker_url, socket_timeout=3, socket_connect_timeout=3)
        client.rpush(DEAD_LIST, json.dumps({"task": task_id, "error": error}))
    except Exception as exc:
        log.warning("dead letter not pushed to Redis (%s); the file record stands", exc)


__all__ = ["make_app", "submit_episode", "submit_drill", "UnitDeadLettered"]
