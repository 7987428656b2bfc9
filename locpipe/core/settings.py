"""Run settings: everything a worker needs to process an episode.

Built in one place for every entry point (``locpipe.cli.options.run_settings`` for
``run``, ``watch`` and ``farm submit``; ``locpipe.farm.units.run_settings`` rebuilds it on a
farm worker from the unit); frozen and picklable, because it crosses process bounds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from locpipe.backends.asr.base import ASROptions
from locpipe.config import Market

DEFAULT_ASR = "faster-whisper"


@dataclass(frozen=True)
class RunSettings:
    """Everything a worker needs to process an episode (picklable: crosses process bounds)."""

    out_dir: Path
    work_dir: Path
    markets: tuple[Market, ...]
    distributor: str = "internal"
    #: two or more: every market goes to each of them, encoded once as A/B segments with
    #: only the visible-text windows rendered per distributor (locpipe.render.ab);
    #: outputs then go to OUT/<market>/<distributor>/ and ``distributor`` is not used
    distributors: tuple[str, ...] = ()
    #: this run makes one distributor's copy out of several (a farm unit): export into
    #: OUT/<market>/<distributor>/ like the A/B copies, and name the distributor in the unit
    distributor_folder: bool = False
    asr_backend: str = DEFAULT_ASR
    asr: ASROptions = ASROptions()
    #: read burned-in source subtitles (text for the transcript, region for the render mask)
    ocr: bool = True
    #: series bible (names, terms); None: look beside the series, then configs/series/<dir>.yaml
    bible_path: Path | None = None
    config_dir: Path | None = None
    #: translation memory shared across episodes (default WORK_DIR/tm.sqlite)
    tm_path: Path | None = None
    #: forensic watermark ledger; None: the house ledger (locpipe.watermark.ledger.ledger_location)
    ledger_path: Path | None = None
    #: label cues by speaker (locpipe.stages.speakers) and give each its own voice (locpipe.localize.voices)
    speakers: bool = True
    #: end each market's work when this stage is due ("render": the farm's tts phase leaves
    #: rendering to render nodes); the unit is then "stopped", its earlier stages cached
    stop_before: str | None = None
    #: with several distributors: whose A/B copies to assemble (None: every distributor's;
    #: (): none, the A/B base only, the unit "stopped"): the farm renders the base once per
    #: market and each distributor's copy as its own small unit
    copies: tuple[str, ...] | None = None
    #: logging of worker processes (``--jobs``, the daemon's child): the CLI's own level and format
    log_level: str = "INFO"
    log_format: str = "text"
    #: export names valid on Windows shares too (``<>:"\\|?*`` replaced; locpipe.core.names)
    windows_names: bool = False
    #: the operator's burned-in subtitle band (top, bottom) as fractions of the height
    #: (``--subtitle-band``), for a style the detector misses; None: detect it
    subtitle_band: tuple[float, float] | None = None
    #: where edited review files are read from (``--review``; locpipe.core.review); None:
    #: SERIES_DIR/.locpipe/review/ beside each episode
    review_dir: Path | None = None


def distributor_fields(names: Sequence[str]) -> dict:
    """Distributor ids as RunSettings fields: one is ``distributor``; several also fill
    ``distributors`` (the pipeline then renders A/B copies into OUT/<market>/<distributor>/)."""
    names = tuple(names)
    return {"distributor": names[0], "distributors": names if len(names) > 1 else ()}


def build_settings(*, out_dir: Path, work_dir: Path, markets: Sequence = (),
                   distributors: Sequence[str] = ("internal",), asr_backend: str = DEFAULT_ASR,
                   asr_model: str | None = None, asr_threads: int | None = None,
                   ocr: bool = True, bible: Path | None = None, tm: Path | None = None, ledger: Path | None = None,
                   config_dir: Path | None = None, log_level: str = "INFO", log_format: str = "text",
                   stop_before: str | None = None, distributor_folder: bool = False,
                   copies: Sequence[str] | None = None, windows_names: bool = False,
                   subtitle_band: tuple[float, float] | None = None, review: Path | None = None):
    """The one mapping of run option values onto ``RunSettings`` (paths are taken as given).

    ``asr_threads`` None keeps ASROptions' default; threads are not part of the transcript's
    cache key, so ``watch`` may use every core and still share ``run``'s cached transcripts.
    """
    asr = ASROptions(model=asr_model) if asr_threads is None else ASROptions(model=asr_model, threads=asr_threads)
    return RunSettings(out_dir=Path(out_dir), work_dir=Path(work_dir), markets=tuple(markets),
                       **distributor_fields(distributors), asr_backend=asr_backend, asr=asr, ocr=ocr,
                       bible_path=bible, config_dir=config_dir, tm_path=tm, ledger_path=ledger,
                       stop_before=stop_before, log_level=log_level, log_format=log_format,
                       distributor_folder=distributor_folder, copies=None if copies is None else tuple(copies),
                       windows_names=windows_names, subtitle_band=subtitle_band, review_dir=review)
