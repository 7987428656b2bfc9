"""Run options shared by ``run``, ``watch`` and ``farm submit``, declared once.

Each of those commands used to declare ``--out``, ``--markets``, ``--distributor`` ... and
build ``RunSettings`` by hand, and they drifted apart (``farm submit --distributor a,b`` made
one distributor called "a,b"; ``watch`` had no ``--bible``). Here the options are declared
by ``add_run_options`` and turned into settings by ``run_settings`` for all three, so one
command line means the same run wherever it is typed. ``locpipe.core.settings.build_settings``
is the one mapping of option values onto ``RunSettings`` fields; a farm worker rebuilds a
unit's settings through it too (``locpipe.farm.units.run_settings``).

Heavy imports (config, backends, core) stay inside the functions: building the parser must
not load the pipeline.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from locpipe.core.settings import DEFAULT_ASR, build_settings
from locpipe.errors import ConfigError

# --------------------------------------------------------------------------- parsing helpers


def config_dir(args: argparse.Namespace) -> Path:
    """``--config-dir``, else $LOCPIPE_CONFIG_DIR, else the bundled configs (not resolved)."""
    from locpipe.config import DEFAULT_CONFIG_DIR

    return Path(getattr(args, "config_dir", None) or os.environ.get("LOCPIPE_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def parse_shard(value: str) -> tuple[int, int]:
    """``--shard I/N`` as (I, N); an argparse type, so a bad value is a usage error (exit 2)."""
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= I < N")
    return i, n


def parse_distributors(value: str) -> tuple[str, ...]:
    """``--distributor a`` or ``a,b,c`` as distributor ids; empty or repeated ids are refused."""
    names = tuple(d.strip() for d in value.split(",") if d.strip())
    if not names:
        raise ConfigError("--distributor", "", "give a distributor id (or a comma list of them)")
    if len(set(names)) != len(names):
        raise ConfigError("--distributor", "", f"a distributor is listed twice: {value}")
    return names


def parse_band(value: str) -> tuple[float, float]:
    """``--subtitle-band TOP:BOTTOM`` (fractions of the height, e.g. 0.78:0.88) as a pair;
    an argparse type, so a bad value is a usage error (exit 2)."""
    try:
        top, bottom = (float(x) for x in value.split(":"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--subtitle-band must look like TOP:BOTTOM (e.g. 0.78:0.88), "
                                         f"got {value!r}") from None
    if not 0.0 <= top < bottom <= 1.0:
        raise argparse.ArgumentTypeError(f"--subtitle-band {value}: need 0 <= TOP < BOTTOM <= 1 (fractions of "
                                         "the frame height)")
    return top, bottom


def add_ocr_options(parser: argparse.ArgumentParser, *, help_no_ocr: str) -> None:
    """``--no-ocr`` and ``--subtitle-band``: the burned-in subtitle options of every command."""
    parser.add_argument("--no-ocr", action="store_true", help=help_no_ocr)
    parser.add_argument("--subtitle-band", type=parse_band, metavar="TOP:BOTTOM",
                        help="rows of the burned-in Chinese subtitles as fractions of the height (e.g. 0.78:0.88), "
                             "for a style the detector misses; default: detected (or `subtitle_band` in the "
                             "series folder's series.yaml)")


def check_asr_backend(name: str, model: str | None) -> None:
    """An unknown ``--asr``, or one whose optional extra is missing, is a configuration error
    before any work (not one failure per episode). Backends load their models lazily."""
    from locpipe.backends.asr.base import ASROptions, get_asr_backend
    from locpipe.errors import BackendUnavailable

    try:
        get_asr_backend(name, ASROptions(model=model))
    except BackendUnavailable as exc:
        raise ConfigError("--asr", name, str(exc)) from None


# --------------------------------------------------------------------------- argparse


def add_asr_options(parser: argparse.ArgumentParser, *, note: str = "") -> None:
    """``--asr`` and ``--asr-model``: one name for the model flag on every command."""
    parser.add_argument("--asr", default=DEFAULT_ASR, help="ASR backend: faster-whisper or openai-whisper")
    parser.add_argument("--asr-model", help=f"ASR model path or name (default: packaged Whisper base{note})")


def add_run_options(parser: argparse.ArgumentParser, *, inputs: bool = True, shard: bool = False,
                    shared: bool = False) -> None:
    """The options of a localization run, for ``run``, ``watch`` (``inputs=False``: it has an
    INBOX instead) and ``farm submit`` (``shared=True``: paths every worker sees; A/B copies
    as farm units: one base per market, one small copy unit per distributor)."""
    where = " on the shared path" if shared else ""
    if inputs:
        parser.add_argument("inputs", nargs="+", type=Path, help=f"series folder(s) and/or episode files{where}")
    parser.add_argument("--out", required=True, type=Path,
                        help=f"output folder{where} (OUT_DIR/<market>/<episode>.mp4)")
    parser.add_argument("--markets", required=True, help="comma-separated market codes (see `locpipe markets`)")
    if shared:
        dist_help = ("distributor id written into the watermarks; a comma list (a,b,c) queues per market one A/B "
                     "base unit and one small copy unit per distributor (outputs in OUT/<market>/<distributor>/)")
    else:
        dist_help = ("distributor id written into the watermarks; a comma list (a,b,c) sends every market to "
                     "each, encoded once as A/B segments (outputs in OUT/<market>/<distributor>/)")
    parser.add_argument("--distributor", default="internal", help=dist_help)
    parser.add_argument("--work", type=Path, help=f"stage cache folder{where} (default OUT_DIR/.locpipe-work)")
    add_asr_options(parser, note="; the same path on every worker" if shared else "")
    if shard:
        parser.add_argument("--shard", type=parse_shard, help="process only shard I of N (array jobs), e.g. 0/4")
    add_ocr_options(parser, help_no_ocr="do not read or mask burned-in source subtitles")
    parser.add_argument("--bible", type=Path, help="series bible YAML (default: bible.yaml beside the episodes, "
                                                   "then configs/series/<folder name>.yaml)")
    parser.add_argument("--tm", type=Path, help="translation memory SQLite file (default WORK_DIR/tm.sqlite)")
    parser.add_argument("--review", type=Path, help=f"folder of edited review files{where} (`locpipe review export`): "
                                                    "they are the final translation/transcript (default "
                                                    "SERIES_DIR/.locpipe/review/)")
    parser.add_argument("--windows-names", action="store_true",
                        help='export names valid on Windows shares too (<>:"\\|?* replaced by _)')
    parser.add_argument("--ledger", type=Path, help="forensic watermark ledger (default: the house ledger, "
                                                    "$LOCPIPE_LEDGER, else `ledger:` in the user config file, else "
                                                    "~/.local/share/locpipe/forensic-ledger.sqlite)")


# --------------------------------------------------------------------------- settings


def _resolved(path: Path | None) -> Path | None:
    return path.resolve() if path else None


def run_settings(args: argparse.Namespace, *, check_asr: bool = True, asr_threads: int | None = None):
    """``RunSettings`` from the parsed options of ``run``, ``watch`` or ``farm submit``.

    Everything that can be wrong in the options fails here, before any work: markets load,
    distributor ids, the ASR backend (``check_asr=False`` for ``farm submit``: the submitter
    need not have the extras its ASR workers have) and the bible. Paths are resolved, because
    the settings cross into worker processes with other working directories.
    """
    from locpipe.config import load_markets

    cfg = config_dir(args)
    markets = load_markets(cfg, args.markets.split(","))
    distributors = parse_distributors(args.distributor)
    if check_asr:
        check_asr_backend(args.asr, args.asr_model)
    if args.bible:  # validate up front: a typo in the bible is a configuration error
        from locpipe.localize.bible import load_bible

        load_bible(args.bible)
    out = args.out.resolve()
    return build_settings(out_dir=out, work_dir=(args.work or out / ".locpipe-work").resolve(), markets=markets,
                          distributors=distributors, asr_backend=args.asr, asr_model=args.asr_model,
                          asr_threads=asr_threads, ocr=not args.no_ocr, bible=_resolved(args.bible),
                          tm=_resolved(args.tm), ledger=_resolved(args.ledger), config_dir=cfg.resolve(),
                          log_level=args.log_level, log_format=args.log_format,
                          windows_names=getattr(args, "windows_names", False),
                          subtitle_band=getattr(args, "subtitle_band", None),
                          review=_resolved(getattr(args, "review", None)))


def transcribe_settings(args: argparse.Namespace, *, asr: str = DEFAULT_ASR, asr_model: str | None = None):
    """Settings for the shared stages only (``transcribe``, ``bible suggest``): no markets, and
    the stage cache ``--work`` (default: the asset cache) as both work and output folder."""
    from locpipe.assets import cache_dir

    work = (args.work or cache_dir() / "work").resolve()
    return build_settings(out_dir=work, work_dir=work, markets=(), asr_backend=asr, asr_model=asr_model,
                          ocr=not args.no_ocr, log_level=args.log_level, log_format=args.log_format,
                          subtitle_band=getattr(args, "subtitle_band", None))
