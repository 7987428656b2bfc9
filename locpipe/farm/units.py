"""Units of farm work: (episode, market, distributor, config hash), planned from a series folder.

A unit's id is derived from those four values only, so submitting the same series twice
names the same units (and the second submission finds them done); its exports have the
deterministic names ``locpipe run`` gives them (``OUT/<market>/<episode>.mp4`` ...).
Specs travel in Celery messages as JSON and carry every path and option a worker needs:
workers on other machines see the same shared paths, not the submitter's memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from locpipe.errors import ConfigError


class UnitSpec(BaseModel):
    """One (episode, market, distributor) export under one market configuration.

    ``out_dir`` is where the farm keeps its state (OUT/.locpipe-farm) and the manifest;
    exports go to ``export_dir`` or, when that is None, ``out_dir`` (OUT/<market>/...).
    """

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
    #: the operator's burned-in subtitle band (``--subtitle-band``), None: detected
    subtitle_band: tuple[float, float] | None = None
    asr_backend: str = "faster-whisper"
    asr_model: str | None = None
    bible: str | None = None
    tm: str | None = None
    ledger: str | None = None
    #: folder of edited review files (``--review``); None: SERIES_DIR/.locpipe/review/
    review: str | None = None
    #: the series goes to several distributors: this unit's export goes to
    #: OUT/<market>/<distributor>/ (the layout of ``locpipe run``'s A/B copies)
    distributor_folder: bool = False
    #: ``export`` (one full render), ``ab-base`` (the market's A/B base, once for all its
    #: distributors) or ``ab-copy`` (one distributor's windows + assembly from the base)
    role: str = "export"
    #: every distributor of the market's A/B batch (A/B roles only)
    distributors: tuple[str, ...] = ()


class EpisodeSpec(BaseModel):
    """An episode and its units: the market-independent stages run once for all of them."""

    model_config = ConfigDict(frozen=True)

    episode: str
    source: str
    #: the exports: one per market (and distributor); with several distributors, the A/B copies
    units: tuple[UnitSpec, ...]
    #: with several distributors: one A/B base unit per market, rendered before its copies
    bases: tuple[UnitSpec, ...] = ()

    @property
    def key(self) -> str:
        """Lock and state name of the episode's shared (asr) phase."""
        return f"{self.episode}--asr"

    def market_plans(self) -> list[tuple[UnitSpec | None, list[UnitSpec]]]:
        """Per market, in order: (its A/B base or None, the export units that follow it)."""
        bases = {b.market: b for b in self.bases}
        markets = list(dict.fromkeys(u.market for u in self.units))
        return [(bases.get(m), [u for u in self.units if u.market == m]) for m in markets]


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


def base_unit_id(episode: str, market: str, cfg_hash: str) -> str:
    """The market's A/B base: ``ep001--us--3f2a9c0d1e--ab`` (no distributor: one base serves all)."""
    digest = hashlib.sha256(f"ab-base\x00{cfg_hash}".encode()).hexdigest()[:10]
    return f"{episode}--{market}--{digest}--ab"


def plan_units(inputs: list[Path], market_codes: list[str], *, out_dir: Path, work_dir: Path, config_dir: Path,
               distributor: str | Sequence[str] = "internal", ocr: bool = True, asr_backend: str = "faster-whisper",
               asr_model: str | None = None, bible: Path | None = None, tm: Path | None = None,
               ledger: Path | None = None) -> list[EpisodeSpec]:
    """``plan_series`` from keyword options (scripts, tests): the markets load and the settings are
    built the way ``farm submit`` builds them. ``distributor`` is one id or a sequence of ids."""
    from locpipe.config import load_markets
    from locpipe.core.settings import build_settings

    names = (distributor,) if isinstance(distributor, str) else tuple(distributor)
    settings = build_settings(out_dir=out_dir.resolve(), work_dir=work_dir.resolve(),
                              markets=load_markets(config_dir, market_codes), distributors=names,
                              asr_backend=asr_backend, asr_model=asr_model, ocr=ocr, bible=_resolved(bible),
                              tm=_resolved(tm), ledger=_resolved(ledger), config_dir=config_dir.resolve())
    return plan_series(inputs, settings)


def plan_series(inputs: list[Path], settings) -> list[EpisodeSpec]:
    """Every episode x market x distributor of the inputs under ``settings`` (a RunSettings),
    validated (names unique) before anything is queued.

    Several distributors are rendered as ``locpipe run`` does (A/B): per market one base unit
    (variants A and B, once) and per distributor a small copy unit (its visible-text windows
    and a stream-copy assembly), exported into OUT/<market>/<distributor>/.
    """
    from locpipe.core.batch import check_unique_names, discover_episodes
    from locpipe.core.names import episode_name

    episodes = discover_episodes(inputs)
    check_unique_names(episodes)
    names = settings.distributors or (settings.distributor,)
    plans = []
    for path in episodes:
        name, source = episode_name(path), str(path.resolve())
        ab = len(names) > 1
        role = "ab-copy" if ab else "export"
        units = tuple(_unit(name, source, market, d, settings, role=role, names=names)
                      for market in settings.markets for d in names)
        bases = tuple(_unit(name, source, market, "", settings, role="ab-base", names=names)
                      for market in settings.markets) if ab else ()
        plans.append(EpisodeSpec(episode=name, source=source, units=units, bases=bases))
    return plans


def _unit(episode: str, source: str, market, distributor: str, settings, *, role: str,
          names: Sequence[str]) -> UnitSpec:
    from locpipe.config import config_hash
    from locpipe.watermark.ledger import ledger_path

    cfg_hash = config_hash(market.config, market.profile)
    out = Path(settings.out_dir)
    uid = (base_unit_id(episode, market.code, cfg_hash) if role == "ab-base"
           else unit_id(episode, market.code, distributor, cfg_hash))
    # the submitter resolves the house ledger once: every worker issues into the same one
    ledger = ledger_path(settings.ledger_path).resolve()
    return UnitSpec(unit_id=uid, episode=episode, source=source, market=market.code, distributor=distributor,
                    config_hash=cfg_hash, out_dir=str(out), distributor_folder=role == "ab-copy", role=role,
                    distributors=tuple(names) if role != "export" else (),
                    work_dir=str(settings.work_dir), config_dir=str(settings.config_dir), ocr=settings.ocr,
                    subtitle_band=settings.subtitle_band, asr_backend=settings.asr_backend,
                    asr_model=settings.asr.model, bible=_str(settings.bible_path),
                    tm=_str(settings.tm_path), ledger=str(ledger), review=_str(settings.review_dir))


def _resolved(path: Path | None) -> Path | None:
    return Path(path).resolve() if path else None


def _str(path: Path | None) -> str | None:
    return str(path) if path else None


def _optional_path(value: str | None) -> Path | None:
    return Path(value) if value else None


def _worker_logging() -> tuple[str, str]:
    """This worker's log level and format (set by its ``locpipe --log-level ... farm worker``):
    a unit's settings carry them, so whatever the pipeline starts logs like the worker."""
    import logging

    from locpipe.core.logs import JsonFormatter

    root = logging.getLogger()
    fmt = "json" if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers) else "text"
    return logging.getLevelName(root.getEffectiveLevel()), fmt


def run_settings(spec: UnitSpec, *, with_market: bool = True, stop_before: str | None = None):
    """The pipeline's RunSettings for a unit, from this worker's view of the shared config,
    built by the same mapping as the CLI's (``locpipe.core.settings.build_settings``).

    A worker whose market config differs from the submitter's would export something other
    than what was asked for under the same unit id: that is refused, naming both hashes.
    """
    from locpipe.config import config_hash, load_market
    from locpipe.core.settings import build_settings

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
    level, fmt = _worker_logging()
    ab = spec.role in ("ab-base", "ab-copy")
    # A/B roles: the market's batch of every distributor; the base makes no copy, a copy unit its own only
    copies = None if not ab else (() if spec.role == "ab-base" else (spec.distributor,))
    # ASR options are part of the transcript's cache key: every worker of a unit uses the same
    return build_settings(out_dir=Path(spec.out_dir), work_dir=Path(spec.work_dir), copies=copies,
                          distributor_folder=spec.distributor_folder and not ab, markets=markets,
                          distributors=spec.distributors if ab else (spec.distributor or "internal",),
                          asr_backend=spec.asr_backend, asr_model=spec.asr_model, ocr=spec.ocr,
                          bible=_optional_path(spec.bible),
                          tm=_optional_path(spec.tm), ledger=_optional_path(spec.ledger), config_dir=config_dir,
                          log_level=level, log_format=fmt, stop_before=stop_before,
                          subtitle_band=spec.subtitle_band, review=_optional_path(spec.review))
