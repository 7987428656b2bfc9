"""The run options declared once (``locpipe.cli.options``): one command line, one RunSettings.

Fast: real parsing through ``locpipe.cli.build_parser`` and the real settings builders,
on stand-in episode files (nothing is probed or run).
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from locpipe.cli import COMMANDS, build_parser, main, options
from locpipe.cli.watch import watch_settings
from locpipe.config import DEFAULT_CONFIG_DIR
from locpipe.core.batch import check_unique_names
from locpipe.errors import ConfigError
from locpipe.farm.units import plan_series, plan_units
from locpipe.farm.units import run_settings as unit_settings

ROOT = Path(__file__).resolve().parent.parent
BIBLE = ROOT / "configs" / "series" / "samples.yaml"


@pytest.fixture
def layout(tmp_path):
    """A series of two stand-in episodes, an inbox, a copy of the bundled configs and a bible."""
    series = tmp_path / "series"
    series.mkdir()
    for name in ("ep001.mp4", "ep002.mp4"):
        (series / name).write_bytes(b"x")
    (tmp_path / "inbox").mkdir()
    shutil.copytree(DEFAULT_CONFIG_DIR, tmp_path / "configs")
    shutil.copy(BIBLE, tmp_path / "bible.yaml")
    return tmp_path


def _shared(t: Path) -> list[str]:
    return ["--out", str(t / "out"), "--markets", "us,us-social", "--distributor", "a, b", "--work", str(t / "work"),
            "--asr-model", "tiny", "--no-ocr", "--bible", str(t / "bible.yaml"), "--tm", str(t / "tm.sqlite"),
            "--ledger", str(t / "ledger.sqlite")]


def _parse(t: Path, *command: str):
    glob = ["--log-level", "DEBUG", "--log-format", "json", "--config-dir", str(t / "configs")]
    return build_parser().parse_args([*glob, *command, *_shared(t)])


def test_run_watch_and_farm_submit_build_the_same_settings(layout):
    run = options.run_settings(_parse(layout, "run", str(layout / "series")))
    watch = watch_settings(_parse(layout, "watch", str(layout / "inbox")))
    farm = options.run_settings(_parse(layout, "farm", "submit", str(layout / "series")), check_asr=False)

    assert run.distributors == ("a", "b") and run.distributor == "a"
    assert [m.code for m in run.markets] == ["us", "us-social"]
    assert run.out_dir == (layout / "out").resolve() and run.work_dir == (layout / "work").resolve()
    assert run.bible_path == (layout / "bible.yaml").resolve() and run.tm_path == (layout / "tm.sqlite").resolve()
    assert run.ledger_path == (layout / "ledger.sqlite").resolve()
    assert run.config_dir == (layout / "configs").resolve()
    assert (run.asr_backend, run.asr.model, run.ocr) == ("faster-whisper", "tiny", False)
    assert (run.log_level, run.log_format) == ("DEBUG", "json")
    assert farm == run
    # the daemon runs one episode at a time and gives ASR every core; threads are not in the cache key
    assert replace(watch.run, asr=run.asr) == run
    assert (watch.log_level, watch.log_format) == ("DEBUG", "json")


def test_defaults_and_the_config_dir_from_the_environment(layout, monkeypatch):
    monkeypatch.setenv("LOCPIPE_CONFIG_DIR", str(layout / "configs"))
    args = build_parser().parse_args(["run", str(layout / "series"), "--out", str(layout / "out"), "--markets", "us"])
    s = options.run_settings(args)
    assert s.config_dir == (layout / "configs").resolve()
    assert s.work_dir == (layout / "out" / ".locpipe-work").resolve()
    assert (s.distributor, s.distributors, s.bible_path, s.tm_path, s.ledger_path) == ("internal", (), None, None,
                                                                                        None)


@pytest.mark.parametrize("value, message", [(" , ", "give a distributor id"), ("a,b,a", "listed twice")])
def test_bad_distributor_lists_are_configuration_errors(value, message):
    with pytest.raises(ConfigError, match=message):
        options.parse_distributors(value)


def test_shard_and_unique_names(tmp_path, layout):
    assert options.parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "x"):
        with pytest.raises(Exception, match="--shard"):
            options.parse_shard(bad)
    assert build_parser().parse_args(["run", "s", "--out", "o", "--markets", "us", "--shard", "0/2"]).shard == (0, 2)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "ep001.mp4").write_bytes(b"x")
    with pytest.raises(ConfigError, match="exports as 'ep001'"):
        check_unique_names([layout / "series" / "ep001.mp4", tmp_path / "other" / "ep001.mp4"])


def test_transcribe_takes_asr_model_and_the_hidden_model_alias(tmp_path, capsys):
    parser = build_parser()
    for flag in ("--asr-model", "--model"):
        args = parser.parse_args(["transcribe", "ep.mp4", flag, "tiny", "--work", str(tmp_path / "w")])
        assert args.asr_model == "tiny"
        s = options.transcribe_settings(args, asr=args.asr, asr_model=args.asr_model)
        assert s.out_dir == s.work_dir == (tmp_path / "w").resolve() and s.markets == ()
        assert s.asr.model == "tiny" and s.ocr
    with pytest.raises(SystemExit):
        parser.parse_args(["transcribe", "--help"])
    helptext = capsys.readouterr().out
    assert "--asr-model" in helptext and "--model" not in helptext.replace("--asr-model", "")


def test_farm_makes_an_ab_base_per_market_and_a_copy_unit_per_distributor(layout):
    args = _parse(layout, "farm", "submit", str(layout / "series"))
    plans = plan_series(args.inputs, options.run_settings(args, check_asr=False))
    units = [u for ep in plans for u in ep.units]
    assert len(units) == 2 * 2 * 2  # episodes x markets x distributors: one copy unit each
    assert len({u.unit_id for u in units}) == len(units)
    assert [(u.episode, u.market, u.distributor, u.role) for u in plans[0].units] == [
        ("ep001", "us", "a", "ab-copy"), ("ep001", "us", "b", "ab-copy"), ("ep001", "us-social", "a", "ab-copy"),
        ("ep001", "us-social", "b", "ab-copy")]
    assert [(b.market, b.role, b.distributors) for b in plans[0].bases] == [
        ("us", "ab-base", ("a", "b")), ("us-social", "ab-base", ("a", "b"))]  # the A/B base once per market
    out = (layout / "out").resolve()
    first = plans[0].units[0]
    assert first.out_dir == str(out) and first.distributor_folder  # exports in OUT/<market>/<distributor>/
    assert (first.ledger, first.tm, first.asr_model) == (str((layout / "ledger.sqlite").resolve()),
                                                          str((layout / "tm.sqlite").resolve()), "tiny")
    worker = unit_settings(plans[0].units[1])  # the worker rebuilds it through the same mapping
    assert (worker.distributors, worker.copies, worker.out_dir) == (("a", "b"), ("b",), out)  # b's copy only
    assert unit_settings(plans[0].bases[0]).copies == ()  # the base unit: no copy
    assert worker.ledger_path == (layout / "ledger.sqlite").resolve() and not worker.ocr

    one = plan_units([layout / "series"], ["us"], out_dir=layout / "o", work_dir=layout / "w",
                     config_dir=DEFAULT_CONFIG_DIR, distributor="acme")
    assert [u.distributor for ep in one for u in ep.units] == ["acme", "acme"]
    single = unit_settings(one[0].units[0])
    assert not one[0].units[0].distributor_folder and not single.distributor_folder
    assert single.out_dir == (layout / "o").resolve()


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    expected = {"run", "transcribe", "qc", "watch", "status", "markets", "models", "bible", "voices", "trace", "farm",
                "ledger", "review", "promo"}
    assert set(COMMANDS) == expected
    for name in expected:
        assert f"\n    {name} " in text, name


def test_errors_map_to_exit_codes(tmp_path):
    assert main(["--config-dir", str(tmp_path), "run", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--markets", "nowhere"]) == 2
    assert main(["qc", str(tmp_path)]) == 2
