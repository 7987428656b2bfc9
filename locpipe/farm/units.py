"""Units of farm work: (episode, market, distributor, config hash), planned from a series folder.

A unit's id is derived from those four values only, so submitting the same series twice
names the same units (and the second submission finds them done); its exports have the
deterministic names ``locpipe run`` gives them (``OUT/<market>/<episode>.mp4`` ...).
Specs travel in Celery messages as JSON and carry every path and option a worker needs:
workers on other machines see the same shared paths, not the submitter's memory.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from locpipe.errors import ConfigError


class UnitSpec(BaseModel):
    """One (episode, market) export for one distributor under one market configuration."""

    model_config = ConfigDict(frozen=True)

    unit_id: str
    episode: str
    source: str
    market: str
    distributor: str
    config_hash: str
    out_dir: str
    work_dir: str
    config_dir: str
    ocr: bool = True
    asr_backend: str = "faster-whisper"
    asr_model: str | None = None
    bible: str | None = None
    tm: str | None = None


class EpisodeSpec(BaseModel):
    """An episode and its units: the market-independent stages run once for all of them."""

    model_config = ConfigDict(frozen=True)

    episode: str
    source: str
    units: tuple[UnitSpec, ...]

    @property
    def key(self) -> str:
        """Lock and state name of the episode's shared (asr) phase."""
        return f"{self.episode}--asr"


class DrillSpec(BaseModel):
    """A stand-in unit for failure drills: sleeps, then writes one output like an export does."""

    model_config = ConfigDict(frozen=True)

    unit_id: str
    out_dir: str
    seconds: float = 2.0
    #: the first N attempts raise (to drill retries and the dead-letter record)
    fail_first: int = 0


def unit_id(episode: str, market: str, distributor: str, cfg_hash: str) -> str:
    """Readable and deterministic: ``ep001--us--3f2a9c0d1e``; the hash covers distributor and config."""
    digest = hashlib.sha256(f"{distributor}|{cfg_hash}".encode()).hexdigest()[:10]
    return f"{episode}--{market}--{digest}"


def plan_units(inputs: list[Path], market_codes: list[str], *, out_dir: Path, work_dir: Path, config_dir: Path,
               distributor: str = "internal", ocr: bool = True, asr_backend: str = "faster-whisper",
               asr_model: str | None = None, bible: Path | None = None, tm: Path | None = None) -> list[EpisodeSpec]:
    """Every episode x market of the inputs, validated (markets load, names unique) before anything is queued."""
    from locpipe.config import config_hash, load_markets
    from locpipe.core.batch import discover_episodes
    from locpipe.core.pipeline import episode_name

    markets = load_markets(config_dir, market_codes)
    episodes = discover_episodes(inputs)
    seen: dict[str, Path] = {}
    plans = []
    for path in episodes:
        name = episode_name(path)
        if name in seen:
            raise ConfigError(path, "", f"exports as {name!r}, like {seen[name]}: rename one of them")
        seen[name] = path
        source = str(path.resolve())
        units = tuple(
            UnitSpec(unit_id=unit_id(name, m.code, distributor, config_hash(m.config, m.profile)), episode=name,
                     source=source, market=m.code, distributor=distributor,
                     config_hash=config_hash(m.config, m.profile), out_dir=str(out_dir.resolve()),
                     work_dir=str(work_dir.resolve()), config_dir=str(config_dir.resolve()), ocr=ocr,
                     asr_backend=asr_backend, asr_model=asr_model,
                     bible=str(bible.resolve()) if bible else None, tm=str(tm.resolve()) if tm else None)
            for m in markets)
        plans.append(EpisodeSpec(episode=name, source=source, units=units))
    return plans


def run_settings(spec: UnitSpec, *, with_market: bool = True, stop_before: str | None = None):
    """The pipeline's RunSettings for a unit, from this worker's view of the shared config.

    A worker whose market config differs from the submitter's would export something other
    than what was asked for under the same unit id: that is refused, naming both hashes.
    """
    from locpipe.backends.asr.base import ASROptions
    from locpipe.config import config_hash, load_market
    from locpipe.core.pipeline import RunSettings

    config_dir = Path(spec.config_dir)
    markets: tuple = ()
    if with_market:
        market = load_market(config_dir, spec.market)
        found = config_hash(market.config, market.profile)
        if found != spec.config_hash:
            raise ConfigError(market.source, "", f"market {spec.market!r} has config hash {found} on this worker, "
                                                 f"{spec.config_hash} when submitted: workers and submitter must "
                                                 "share one config tree")
        markets = (market,)
    # ASR options are part of the transcript's cache key: every worker of a unit uses the same
    return RunSettings(out_dir=Path(spec.out_dir), work_dir=Path(spec.work_dir), markets=markets,
                       distributor=spec.distributor, asr_backend=spec.asr_backend,
                       asr=ASROptions(model=spec.asr_model), ocr=spec.ocr,
                       bible_path=Path(spec.bible) if spec.bible else None, config_dir=config_dir,
                       tm_path=Path(spec.tm) if spec.tm else None, stop_before=stop_before)
