"""Command line: ``locpipe run | markets | models``.

Parsing and reporting only; the work is in ``locpipe.core``. Exit codes are named in
``locpipe.exit_codes``: 0 all units ok, 3 some units failed, 2 configuration error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from rich.console import Console

from locpipe import __version__
from locpipe.errors import ConfigError, InputError, LocpipeError
from locpipe.exit_codes import ExitCode

log = logging.getLogger("locpipe")


def _config_dir(value: str | None) -> Path:
    from locpipe.config import DEFAULT_CONFIG_DIR

    return Path(value or os.environ.get("LOCPIPE_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


def _shard(value: str) -> tuple[int, int]:
    try:
        i, n = (int(x) for x in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must look like I/N (e.g. 0/4), got {value!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise argparse.ArgumentTypeError(f"--shard {value}: need 0 <= I < N")
    return i, n


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="locpipe", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"locpipe {__version__}")
    p.add_argument("--log-level", default=os.environ.get("LOCPIPE_LOG_LEVEL", "INFO"))
    p.add_argument("--log-format", choices=["text", "json"], default=os.environ.get("LOCPIPE_LOG_FORMAT", "text"))
    p.add_argument("--config-dir", help="folder with markets/ and profiles/ (default: the bundled configs)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="localize episodes into per-market exports")
    run.add_argument("inputs", nargs="+", type=Path, help="series folder(s) and/or episode files")
    run.add_argument("--out", required=True, type=Path, help="output folder (OUT_DIR/<market>/<episode>.mp4)")
    run.add_argument("--markets", required=True, help="comma-separated market codes (see `locpipe markets`)")
    run.add_argument("--distributor", default="internal", help="distributor id written into the watermark")
    run.add_argument("--jobs", type=int, default=1, help="episodes processed in parallel")
    run.add_argument("--work", type=Path, help="stage cache folder (default OUT_DIR/.locpipe-work)")
    run.add_argument("--asr", default="faster-whisper", help="ASR backend")
    run.add_argument("--asr-model", help="ASR model path or name (default: packaged Whisper base)")
    run.add_argument("--shard", type=_shard, help="process only shard I of N (array jobs), e.g. 0/4")
    run.add_argument("--no-ocr", action="store_true", help="do not read or mask burned-in source subtitles")

    tr = sub.add_parser("transcribe", help="source-language cues of one episode (SRT and JSON)")
    tr.add_argument("episode", type=Path)
    tr.add_argument("--out", type=Path, help="SRT path (default EPISODE.transcript.zh.srt beside the video)")
    tr.add_argument("--json", type=Path, help="also write the cues with words, confidence and source as JSON")
    tr.add_argument("--asr", default="faster-whisper", help="ASR backend")
    tr.add_argument("--model", help="ASR model path or name (default: packaged Whisper base)")
    tr.add_argument("--work", type=Path, help="stage cache folder (default: the asset cache)")
    tr.add_argument("--no-ocr", action="store_true", help="ASR only: ignore burned-in subtitles")

    qc = sub.add_parser("qc", help="(re)write the QC report OUT_DIR/qc/index.html")
    qc.add_argument("out", type=Path, help="an OUT_DIR of `locpipe run`")

    sub.add_parser("markets", help="list configured markets")
    models = sub.add_parser("models", help="prepare packaged model assets")
    models.add_argument("action", choices=["prepare"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from locpipe.core.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        commands = {"run": cmd_run, "transcribe": cmd_transcribe, "markets": cmd_markets, "models": cmd_models,
                    "qc": cmd_qc}
        return commands[args.command](args)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except InputError as exc:
        log.error("input error: %s", exc)
        return ExitCode.CONFIG_ERROR
    except LocpipeError as exc:
        log.error("%s", exc)
        return ExitCode.INTERNAL_ERROR


def cmd_markets(args) -> int:
    from rich.table import Table

    from locpipe.config import list_market_codes, load_market

    cfg_dir = _config_dir(args.config_dir)
    table = Table(title=f"markets in {cfg_dir}")
    for col in ("code", "name", "language", "dub", "profile", "size", "loudness", "translation"):
        table.add_column(col)
    for code in list_market_codes(cfg_dir):
        m = load_market(cfg_dir, code)
        c = m.config
        table.add_row(code, c.name, c.language, c.dub.voice if c.dub.enabled else "subs only", m.profile.name,
                      f"{m.profile.width}x{m.profile.height}", f"{c.loudness.integrated} LUFS",
                      ",".join(c.translation.backends))
    Console().print(table)
    return ExitCode.OK


def cmd_models(args) -> int:
    from locpipe.assets import prepare_all

    for name, path in prepare_all().items():
        log.info("%s: %s", name, path)
    return ExitCode.OK


def _cps_limits(config_dir: Path, codes) -> dict[str, float]:
    from locpipe.config import load_market
    from locpipe.stages.segment import rules_for

    limits = {}
    for code in set(codes):
        try:
            m = load_market(config_dir, code)
        except ConfigError:
            continue
        limits[code] = rules_for(m.config.language, m.config.subtitle_rules).max_chars_per_second
    return limits


def write_report(out: Path, config_dir: Path) -> Path | None:
    """The QC report at the end of a run; a failure here never fails the run."""
    import json

    from locpipe.report import build_report

    try:
        codes = [u["market"] for u in json.loads((out / "manifest.json").read_text())["units"]]
        return build_report(out, _cps_limits(config_dir, codes))
    except Exception as exc:
        log.warning("QC report not written: %s", exc)
        return None


def cmd_qc(args) -> int:
    if not (args.out / "manifest.json").exists():
        raise ConfigError(args.out / "manifest.json", "", "not found: is this an OUT_DIR of `locpipe run`?")
    index = write_report(args.out, _config_dir(args.config_dir))
    if index is None:
        return ExitCode.INTERNAL_ERROR
    log.info("QC report: %s", index)
    return ExitCode.OK


def cmd_transcribe(args) -> int:
    from locpipe.assets import cache_dir
    from locpipe.backends.asr.base import ASROptions
    from locpipe.core.pipeline import EpisodeJob, RunSettings
    from locpipe.core.store import atomic_write_text
    from locpipe.stages.segment import write_srt
    from locpipe.artifacts import SubtitleEvent

    work = (args.work or cache_dir() / "work").resolve()
    settings = RunSettings(out_dir=work, work_dir=work, markets=(), asr_backend=args.asr,
                           asr=ASROptions(model=args.model), ocr=not args.no_ocr)
    transcript = EpisodeJob(args.episode, settings).transcript()
    srt = args.out or args.episode.with_name(args.episode.stem + ".transcript.zh.srt")
    events = [SubtitleEvent(start=c.start, end=c.end, lines=[c.text], cue_index=c.index) for c in transcript.cues]
    tmp = srt.with_name(f".{srt.name}.tmp")
    write_srt(events, tmp)
    tmp.replace(srt)
    if args.json:
        atomic_write_text(args.json, transcript.model_dump_json(indent=1))
    log.info("%d cues from %s -> %s", len(transcript.cues), transcript.backend, srt)
    return ExitCode.OK


def cmd_run(args) -> int:
    from locpipe.backends.asr.base import ASROptions
    from locpipe.config import load_markets
    from locpipe.core.batch import discover_episodes, run_batch, select_shard, write_manifest
    from locpipe.core.pipeline import RunSettings, episode_name
    from locpipe.core.progress import ProgressBoard, summary_table

    started = time.perf_counter()
    markets = load_markets(_config_dir(args.config_dir), args.markets.split(","))
    if args.jobs < 1:
        raise ConfigError("--jobs", "", "must be at least 1")
    episodes = select_shard(discover_episodes(args.inputs), args.shard)
    if not episodes:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    _check_unique_names(episodes, episode_name)
    out = args.out.resolve()
    settings = RunSettings(out_dir=out, work_dir=(args.work or out / ".locpipe-work").resolve(),
                           markets=tuple(markets), distributor=args.distributor, asr_backend=args.asr,
                           asr=ASROptions(model=args.asr_model), ocr=not args.no_ocr)
    log.info("%d episode(s) x %d market(s) -> %s", len(episodes), len(markets), out)
    console = Console(stderr=True)
    with ProgressBoard([episode_name(p) for p in episodes], [m.code for m in markets], console) as board:
        reports = run_batch(episodes, settings, jobs=args.jobs, progress=board)
    manifest = write_manifest(out, reports, settings, started)
    report = write_report(out, _config_dir(args.config_dir))
    stdout = Console()
    if not stdout.is_terminal:  # logs and CI: wide enough that paths and reasons stay readable
        stdout = Console(width=200)
    stdout.print(summary_table(reports))
    units = [u for r in reports for u in r.units]
    failed = [u for u in units if u.status != "ok"]
    log.info("%d/%d units ok in %.1fs; manifest: %s; QC report: %s", len(units) - len(failed), len(units),
             time.perf_counter() - started, manifest, report)
    return ExitCode.UNITS_FAILED if failed else ExitCode.OK


def _check_unique_names(episodes: list[Path], name_of) -> None:
    """Two inputs that would export under one name would overwrite each other: refuse."""
    seen: dict[str, Path] = {}
    for path in episodes:
        name = name_of(path)
        if name in seen:
            raise ConfigError(path, "", f"exports as {name!r}, like {seen[name]}: rename one of them "
                                        "or run the two series into different --out folders")
        seen[name] = path


if __name__ == "__main__":
    sys.exit(main())
