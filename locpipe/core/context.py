"""What every stage of one episode shares: its identity, settings, engines and stage cache.

``EpisodeContext.stage`` is the one way a stage runs: progress events, log context, the
stage's code version in its key, the artifact store, and any failure turned into a
``StageError`` naming the stage, so the orchestrator reports it without guessing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from locpipe.config import Market
from locpipe.core.logs import log_context
from locpipe.core.names import distributor_folder, work_folder_name
from locpipe.core.reports import ProgressFn
from locpipe.core.resources import Resources
from locpipe.core.settings import RunSettings
from locpipe.core.store import ArtifactStore, Stored
from locpipe.errors import LocpipeError, StageError

log = logging.getLogger(__name__)

A = TypeVar("A", bound=BaseModel)

#: bump a stage's version when its code changes what it produces: invalidates its cache
STAGE_VERSIONS = {"ingest": 1, "source_subs": 1, "transcribe": 2, "translate": 5, "segment": 3, "synthesize": 2,
                  "mix": 2, "render": 1, "render_ab": 1, "qc": 4, "speakers": 1, "separate": 1, "review": 1,
                  "review_source": 1}


def describe(exc: BaseException) -> str:
    """An error as the user reads it: our own errors say what and where; others add their type."""
    if isinstance(exc, StageError):
        return exc.message
    if isinstance(exc, LocpipeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


@contextmanager
def as_stage(stage: str) -> Iterator[None]:
    """Any failure inside the block is a failure of ``stage`` (a StageError stays as it is)."""
    try:
        yield
    except StageError:
        raise
    except Exception as exc:
        raise StageError(stage, describe(exc)) from exc


@dataclass
class EpisodeContext:
    """One episode in one run. Made after the probe, when the episode's content hash is known."""

    path: Path
    name: str
    sha256: str
    settings: RunSettings
    resources: Resources
    progress: ProgressFn
    store: ArtifactStore = field(init=False)

    def __post_init__(self) -> None:
        self.store = ArtifactStore(self.settings.work_dir)

    @property
    def scope(self) -> str:
        """The episode's folder in the stage cache: a bounded prefix of its name plus a content
        hash prefix (any valid episode name fits the filesystem's 255-byte limit)."""
        return f"episodes/{work_folder_name(self.name, self.sha256)}"

    def stage(self, market: str, stage: str, parts: dict, model_cls: type[A], make: Callable[[Path], A],
              store: ArtifactStore | None = None) -> Stored[A]:
        """Load or make one stage artifact (see the module docstring); ``store`` collects a unit's records."""
        self.progress(self.name, market, stage, "start")
        with log_context(episode=self.name, market=market, stage=stage), as_stage(stage):
            stored = (store or self.store).get_or_make(self.scope, stage, {"v": STAGE_VERSIONS[stage], **parts},
                                                       model_cls, make)
        self.progress(self.name, market, stage, "cached" if stored.cached else "done")
        return stored

    def has(self, stage: str, parts: dict) -> bool:
        return self.store.has(self.scope, stage, {"v": STAGE_VERSIONS[stage], **parts})

    @cached_property
    def bible(self):
        """The series bible (loaded once per episode; a bad bible fails the episode's markets)."""
        from locpipe.localize.bible import find_bible, load_bible

        path = self.settings.bible_path or find_bible(self.path.resolve().parent, self.settings.config_dir)
        if path:
            log.info("series bible: %s", path)
        return load_bible(path) if path else None

    @cached_property
    def series_state(self) -> Path:
        """SERIES_DIR/.locpipe (speaker voice prints, voices.yaml), else a folder in the work dir."""
        from locpipe.localize.voices import writable_state_dir

        return writable_state_dir(self.path.resolve().parent, self.settings.work_dir)

    @property
    def own_distributor(self) -> str | None:
        """The distributor whose folder a single (non-A/B) export goes to; None: OUT/<market>/."""
        return self.settings.distributor if self.settings.distributor_folder else None

    def export_folder(self, market: Market, distributor: str | None = None) -> Path:
        """OUT_DIR/<market>/, or OUT_DIR/<market>/<distributor>/ with several distributors."""
        folder = self.settings.out_dir / market.code
        return folder / distributor_folder(distributor) if distributor else folder

    def forensic(self, market: Market, distributor: str | None = None):
        """The forensic watermark spec for this market's render; None when its profile has it off."""
        if not market.profile.forensic_watermark:
            return None
        from locpipe.watermark.forensic import ForensicSpec
        from locpipe.watermark.keys import load_key
        from locpipe.watermark.ledger import ledger_path

        ledger = ledger_path(self.settings.ledger_path).resolve()  # the house ledger unless --ledger
        export_file = self.export_folder(market, distributor) / f"{self.name}.mp4"
        return ForensicSpec(key=load_key(ledger, create=True), ledger=ledger, export_file=str(export_file))
