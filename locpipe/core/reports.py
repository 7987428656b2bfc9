"""What a run reports: one ``UnitReport`` per (episode, market[, distributor]), grouped per episode.

These are the manifest's rows (``locpipe.core.manifest``) and what the summary table,
the watch daemon's journal and the farm's unit records are made from.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from locpipe.core.store import StageRecord

#: progress callback: (episode, market or "", stage, status) with status in start/done/cached/failed
ProgressFn = Callable[[str, str, str, str], None]


@dataclass
class UnitReport:
    """One (episode, market) unit, as written to the manifest."""

    episode: str
    market: str
    #: set when the run has several distributors (one unit per market and distributor)
    distributor: str = ""
    status: str = "pending"  # ok | failed | stopped (RunSettings.stop_before)
    error: str = ""
    failed_stage: str = ""
    config_hash: str = ""
    export_id: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    stages: list[dict] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    qc_passed: bool | None = None
    seconds: float = 0.0
    #: translation memory lookups for this unit
    tm_hits: int = 0
    tm_misses: int = 0
    #: "any" or "local-only" (series bible or market); with local-only, ``data_note`` says which
    #: remote backends were skipped and that no text or audio left the machine
    data_policy: str = "any"
    data_note: str = ""
    #: backends that failed on this unit before the one used (name: reason), in order
    fallbacks: list[str] = field(default_factory=list)
    #: a linguist's review file used for this unit (locpipe.core.review): file, mtime, edited
    #: cue indexes, rejected edits and warnings naming file and line
    review: dict = field(default_factory=dict)
    #: dub lines spoken by this run ("synthesized") and taken from the clip cache ("reused")
    dub_lines: dict = field(default_factory=dict)


@dataclass
class EpisodeReport:
    episode: str
    source: str
    sha256: str = ""
    duration: float = 0.0
    units: list[UnitReport] = field(default_factory=list)
    shared_stages: list[dict] = field(default_factory=list)


def stage_rows(records: Iterable[StageRecord]) -> list[dict]:
    """Stage records as manifest rows."""
    return [{"stage": r.stage, "key": r.key, "cached": r.cached, "seconds": round(r.seconds, 3)} for r in records]


def failed_episode(episode: str, source: str, market_codes: Iterable[str], error: str, stage: str, *,
                   shared_stages: list[dict] | None = None) -> EpisodeReport:
    """An episode none of whose markets could be made: every unit fails with the same reason.

    The one shape for an unusable episode (bad file, dead worker process, dead daemon child).
    """
    units = [UnitReport(episode=episode, market=code, status="failed", error=error, failed_stage=stage)
             for code in market_codes]
    return EpisodeReport(episode=episode, source=source, units=units, shared_stages=shared_stages or [])
