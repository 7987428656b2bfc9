"""Farm settings: where the broker is and how patient the farm is with slow or failing units.

Every worker of one farm must use the same values (they decide when a silent worker's unit
is handed to another), so they come from the environment a deployment sets once
(``LOCPIPE_BROKER_URL``, ``LOCPIPE_FARM_*``) and can be overridden on the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

from locpipe.errors import ConfigError

BROKER_ENV = "LOCPIPE_BROKER_URL"
#: the names of the three queues: GPU nodes take ``asr``, CPU nodes ``tts`` and ``render``
QUEUES = ("asr", "tts", "render")


@dataclass(frozen=True)
class FarmSettings:
    """Broker and reliability settings shared by submitters and workers."""

    broker_url: str
    #: seconds a delivered, unacknowledged unit stays invisible before Redis hands it to
    #: another worker: must exceed the longest stage a task runs (a 10-minute 1080p render
    #: plus headroom), or a slow unit is started twice (harmless, idempotent, but wasted).
    #: Only a backstop now: a dead worker's units come back through its expired lease
    visibility_timeout: float = 6 * 3600.0
    #: how often each worker sweeps for units whose visibility timeout has expired
    restore_interval: float = 60.0
    #: attempts per unit phase (a worker killed mid-unit counts as one) before dead-letter
    max_attempts: int = 3
    #: back-off before retry N: retry_base * 2**(N-1) seconds, at most retry_max
    retry_base: float = 30.0
    retry_max: float = 600.0
    #: a unit locked by a live worker elsewhere (a duplicate delivery) is looked at again after this
    busy_delay: float = 15.0
    #: pool processes are replaced after this many tasks: models and native memory are freed
    max_tasks_per_child: int = 1
    #: a worker's lease (``locpipe.farm.lease``) lives this long unless its heartbeat renews it
    #: (every third of it); a dead worker's units are requeued after at most lease_ttl + reap_interval
    lease_ttl: float = 30.0
    #: how often each worker's reaper looks for units whose worker's lease expired
    reap_interval: float = 10.0

    def __post_init__(self) -> None:
        if not self.broker_url:
            raise ConfigError(BROKER_ENV, "", "no broker: set LOCPIPE_BROKER_URL or pass --broker "
                                              "(e.g. redis://redis:6379/0)")
        if not self.broker_url.startswith(("redis://", "rediss://", "redis+socket://")):
            raise ConfigError(BROKER_ENV, "", f"{self.broker_url!r}: the farm runs on Redis "
                                              "(redis://HOST:PORT/DB)")
        if self.max_attempts < 1:
            raise ConfigError("LOCPIPE_FARM_MAX_ATTEMPTS", "", "must be at least 1")
        if min(self.visibility_timeout, self.restore_interval, self.busy_delay) <= 0 or self.retry_base < 0:
            raise ConfigError("LOCPIPE_FARM_*", "", "timeouts and delays must be positive")
        if self.lease_ttl < 1 or self.reap_interval <= 0 or self.reap_interval > self.lease_ttl:
            raise ConfigError("LOCPIPE_FARM_LEASE_TTL", "", f"lease TTL ({self.lease_ttl:g}s) must be at least 1s and "
                                                            f"at least the reap interval ({self.reap_interval:g}s)")
        if self.retry_max >= self.visibility_timeout or self.busy_delay >= self.visibility_timeout:
            # a retry waiting for its countdown is held unacknowledged by a worker: a countdown
            # past the visibility timeout would be redelivered while it still waits
            raise ConfigError("LOCPIPE_FARM_RETRY_MAX", "",
                              f"back-off ({self.retry_max:g}s) must stay below the visibility timeout "
                              f"({self.visibility_timeout:g}s)")

    def backoff(self, attempt: int) -> float:
        """Seconds to wait before the retry that follows failed attempt ``attempt`` (1-based)."""
        return min(self.retry_max, self.retry_base * 2 ** max(0, attempt - 1))


#: environment variable -> field; values are parsed with the field's type
ENV = {
    "LOCPIPE_FARM_VISIBILITY_TIMEOUT": "visibility_timeout",
    "LOCPIPE_FARM_RESTORE_INTERVAL": "restore_interval",
    "LOCPIPE_FARM_MAX_ATTEMPTS": "max_attempts",
    "LOCPIPE_FARM_RETRY_BASE": "retry_base",
    "LOCPIPE_FARM_RETRY_MAX": "retry_max",
    "LOCPIPE_FARM_BUSY_DELAY": "busy_delay",
    "LOCPIPE_FARM_MAX_TASKS_PER_CHILD": "max_tasks_per_child",
    "LOCPIPE_FARM_LEASE_TTL": "lease_ttl",
    "LOCPIPE_FARM_REAP_INTERVAL": "reap_interval",
}


def load_settings(broker: str | None = None, environ: Mapping[str, str] | None = None, **overrides) -> FarmSettings:
    """Settings from ``--broker``/overrides first, then the environment, then the defaults."""
    env = os.environ if environ is None else environ
    types = {f.name: f.type for f in fields(FarmSettings)}
    values: dict = {"broker_url": broker or env.get(BROKER_ENV, "")}
    for var, name in ENV.items():
        raw = env.get(var)
        if raw is None or raw == "":
            continue
        cast = int if types[name] in (int, "int") else float
        try:
            values[name] = cast(raw)
        except ValueError:
            raise ConfigError(var, "", f"{raw!r} is not a number") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FarmSettings(**values)
