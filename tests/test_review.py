"""The review loop (issue 14): review files out, a linguist's edits in, only changed lines re-dubbed.

Pure checks of the parser and the diff, the TM's approved entries and its migration, then
the real pipeline in process (fake ASR/MT/TTS engines, real ffmpeg, store, mix, render,
QC and export) and the CLI: export, edit three lines as a person would in the SRT, run
again, and count what was spoken again.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from pathlib import Path

import fake_backends as fb
import numpy as np
import pysubs2
import pytest
from conftest import make_clip
from test_pipeline_inprocess import MX, US, make_settings, write_configs

from locpipe.artifacts import Cue
from locpipe.backends.asr.base import ASR
from locpipe.backends.mt.base import MT
from locpipe.core import review as core_review
from locpipe.core.pipeline import run_episode
from locpipe.core.resources import Resources
from locpipe.errors import StageError
from locpipe.localize import review as rv
from locpipe.localize.tm import Approval, TMKey, TranslationMemory, keys_for_lines
from locpipe.stages.synthesize import ClipCache

# --------------------------------------------------------------------------- a series of our own

ASR_NAME, MT_NAME = "review-asr", "review-mt"
#: per episode file stem: (start, end, Chinese line); ep02 repeats ep01's second and third lines
SCRIPTS = {
    "fan01": [(0.2, 1.4, "周敏，你终于来了。"), (1.7, 3.0, "合同在桌上。"), (3.3, 4.6, "我不会签字的。"),
              (4.9, 6.0, "那你走吧。"), (6.3, 7.6, "等一下，我再想想。")],
    "fan02": [(0.3, 1.5, "你又迟到了。"), (1.7, 3.0, "合同在桌上。"), (3.3, 4.6, "我不会签字的。"),
              (4.9, 6.2, "明天见。")],
}
ENGLISH = {"周敏，你终于来了。": "Zhou Min, you finally came.", "合同在桌上。": "The contract is on the desk.",
           "我不会签字的。": "I will not sign it.", "那你走吧。": "Then go.",
           "等一下，我再想想。": "Wait, let me think again.", "你又迟到了。": "You are late again.",
           "明天见。": "See you tomorrow."}
MT_LINES: Counter[str] = Counter()


class ScriptASR(fb.FakeASR):
    """Recognizes the episode's script (by the clip's length: each test clip has its own)."""

    @property
    def version(self) -> str:
        return "review-asr 1.0"

    def transcribe(self, wav, *, clip=None):
        import wave

        with wave.open(str(wav), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
        script = SCRIPTS["fan01"] if seconds > 7.9 else SCRIPTS["fan02"]
        return [Cue(index=i, start=s, end=e, text=t, confidence=0.9) for i, (s, e, t) in enumerate(script)], []


class ScriptMT(fb.FakeMT):
    term_mode = "plain"

    def translate(self, request):
        MT_LINES.update(c.text for c in request.cues)
        return [ENGLISH[c.text] for c in request.cues]


@pytest.fixture
def series(tmp_path):
    """Two episodes (8 s and 6.5 s, 16:9 and 9:16), configs with a dubbed English market."""
    ASR.register(ASR_NAME)(ScriptASR)
    MT.register(MT_NAME)(ScriptMT)
    try:
        with fb.registered():
            folder = tmp_path / "series"
            folder.mkdir()
            make_clip(folder / "fan01.mp4", seconds=8.0, size="640x360")
            make_clip(folder / "fan02.mp4", seconds=6.5)
            cfg = write_configs(tmp_path / "configs", {US: {"translation": {"backends": [MT_NAME]}}})
            yield folder, cfg
    finally:
        ASR._factories.pop(ASR_NAME, None)
        MT._factories.pop(MT_NAME, None)


def settings_for(tmp_path, cfg, codes=(US,), **kw):
    return make_settings(tmp_path, list(codes), cfg, asr_backend=ASR_NAME, **kw)


def exported(series, tmp_path):
    """(folder, configs, settings, resources, episode, review folder) after fan01's review export."""
    folder, cfg = series
    settings, resources = settings_for(tmp_path, cfg), Resources()
    ep1, review_out = folder / "fan01.mp4", tmp_path / "review-out"
    core_review.export_episode(ep1, settings, resources, review_out)
    return folder, cfg, settings, resources, ep1, review_out


def edit_three(srt: Path) -> None:
    """What a linguist does in Subtitle Edit: one line shorter, one longer, one retimed; the
    editor saves with CRLF and its own numbering."""
    subs = pysubs2.load(str(srt), encoding="utf-8")
    subs[0].text = "Zhou Min, at last."
    subs[2].text = "I will never sign this contract, not today and not tomorrow."
    subs[3].start, subs[3].end = subs[3].start + 150, subs[3].end + 200
    srt.write_bytes(subs.to_string("srt").replace("\n", "\r\n").encode("utf-8"))


# --------------------------------------------------------------------------- pure


def test_parse_srt_is_lenient_with_editors_and_names_broken_lines():
    text = ("\ufeff7\r\n00:00:01.5 --> 00:00:02,400\r\nHello\r\nthere\r\n\r\n\r\n"
            "8\r\n00:00:03,000 -> 00:00:04,000\r\nno arrow\r\n\r\n"
            "00:00:05,000 --> 00:00:04,000\r\nbackwards\r\n\r\n"
            "00:00:06,000 --> 00:00:07,000\r\nno number\r\n")
    cues, problems = rv.parse_srt(text)
    assert [(c.start, c.end, c.text, c.line) for c in cues] == [(1.5, 2.4, "Hello there", 2),
                                                               (6.0, 7.0, "no number", 14)]
    assert [p.line for p in problems] == [7, 11]
    assert "no timing line" in problems[0].where("x.srt") and problems[0].where("x.srt").startswith("x.srt:7:")
    assert "ends" in problems[1].message


def test_apply_review_takes_valid_edits_and_refuses_the_rest():
    machine = [rv.MachineCue(i, s, e, t) for i, (s, e, t) in enumerate(
        [(0.0, 1.0, "One."), (1.5, 2.5, "Two."), (3.0, 4.0, "Three."), (4.5, 5.5, "Four."), (6.0, 7.0, "Five.")])]
    edited = [rv.EditedCue(0.0, 1.0, "One!", 3), rv.EditedCue(1.5, 2.5, "两个", 7),
              rv.EditedCue(3.2, 4.1, "Three.", 11), rv.EditedCue(0.5, 5.5, "Four.", 15),
              rv.EditedCue(6.0, 7.0, "A very long line that nobody can read in one second at all", 19)]
    out = rv.apply_review(machine, edited, language="en", duration=8.0, max_cps=20)
    assert [(c.index, c.what) for c in out.changes] == [(0, ("text",)), (2, ("timing",)), (4, ("text",))]
    assert [c.text for c in out.cues][:2] == ["One!", "Two."]  # the Chinese edit is refused
    assert (out.cues[2].start, out.cues[2].end) == (3.2, 4.1)
    assert [p.line for p in out.problems] == [7, 15]
    assert "Chinese" in out.problems[0].message and "before the previous cue ends" in out.problems[1].message
    assert [w.line for w in out.warnings] == [19] and "reading speed" in out.warnings[0].message


def test_a_file_for_another_cut_is_matched_by_time_and_extra_cues_refused():
    machine = [rv.MachineCue(0, 0.0, 1.0, "One."), rv.MachineCue(1, 2.0, 3.0, "Two.")]
    edited = [rv.EditedCue(2.0, 3.0, "Two!", 3), rv.EditedCue(10.0, 11.0, "Extra", 7)]
    out = rv.apply_review(machine, edited, language="en", duration=12.0, max_cps=20, by_time=True)
    assert [c.text for c in out.cues] == ["One.", "Two!"]
    out = rv.apply_review(machine, edited[:1] + edited, language="en", duration=12.0, max_cps=20)
    assert any("3 cues in the file" in p.message for p in out.problems)
    assert any(p.line == 7 and "matches no cue" in p.message for p in out.problems)


def test_source_review_needs_chinese_and_tsv_round_trips():
    machine = [rv.MachineCue(0, 0.0, 1.0, "你好。")]
    out = rv.apply_review(machine, [rv.EditedCue(0.0, 1.0, "Hello.", 2)], language="zh", duration=2, max_cps=9)
    assert out.cues[0].text == "你好。" and "no Chinese" in out.problems[0].message
    table = rv.format_tsv({"episode": "e 1"}, [{"index": 1, "start": "00:00:00,000", "end": "00:00:01,000",
                                                "source": "你\t好", "machine": "Hi", "final": "Hello\nyou"}])
    assert rv.parse_tsv_header(table)["episode"] == "e_1"
    cues, problems = rv.parse_tsv(table)
    assert not problems and [(c.start, c.end, c.text) for c in cues] == [(0.0, 1.0, "Hello you")]
    _cues, bad = rv.parse_tsv(table.replace("00:00:01,000", "soon"))
    assert bad[0].line == 3


# --------------------------------------------------------------------------- translation memory


def test_tm_migrates_an_old_file_and_serves_approved_lines(tmp_path):
    path = tmp_path / "tm.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE tm (key TEXT PRIMARY KEY, source TEXT NOT NULL, source_lang TEXT NOT NULL, "
               "target_lang TEXT NOT NULL, context TEXT NOT NULL, backend TEXT NOT NULL, bible TEXT NOT NULL, "
               "target TEXT NOT NULL, created REAL NOT NULL, uses INTEGER NOT NULL DEFAULT 0)")
    old = TMKey("合同在桌上。", "zh", "en", "ctx", "mt")
    db.execute("INSERT INTO tm VALUES (?, ?, 'zh', 'en', 'ctx', 'mt', '', 'Old text.', 0, 0)",
               (old.digest, "合同在桌上。"))
    db.commit()
    db.close()
    lines = ["你好。", "合同在桌上。", "再见。"]
    keys = keys_for_lines(lines, "zh", "en", "mt")
    with TranslationMemory(path) as tm:
        assert tm.lookup_many([old]) == {old: "Old text."}
        assert tm.lookup_approved(keys) == {}
        tm.store_approved({keys[1]: "The contract is right there."}, Approval("ep1.en.srt", 100.0, "ep1"))
        other = keys_for_lines(["别的。", "合同在桌上。"], "zh", "en", "mt")[1]  # other context, later
        tm.store_approved({other: "Contract's on the desk."}, Approval("ep3.en.srt", 200.0, "ep3"))
    with TranslationMemory(path) as tm:
        columns = {r[1] for r in tm._db.execute("PRAGMA table_info(tm)")}
        assert {"approved", "origin", "approved_at", "episode"} <= columns
        found = tm.lookup_approved(keys, exclude_episode="ep2")
        assert found[keys[1]][0] == "The contract is right there."  # same context beats newer
        assert found[keys[1]][1] == Approval("ep1.en.srt", 100.0, "ep1")
        assert tm.lookup_approved(keys, exclude_episode="ep1")[keys[1]][0] == "Contract's on the desk."
        assert set(tm.lookup_approved(keys)) == {keys[1]}


def test_clip_cache_keys_on_text_voice_and_cue_times(tmp_path):
    cache = ClipCache(tmp_path, "tts 1")
    key = cache.key("Hello.", "piper:joe", 22050, 1.0, 2.0)
    assert key != cache.key("Hello!", "piper:joe", 22050, 1.0, 2.0)
    assert key != cache.key("Hello.", "piper:joe", 22050, 1.1, 2.0)
    assert key != ClipCache(tmp_path, "tts 2").key("Hello.", "piper:joe", 22050, 1.0, 2.0)
    cache.save(key, np.ones(10, dtype=np.float32), "piper:joe")
    audio, voice = cache.load(key)
    assert voice == "piper:joe" and audio.tolist() == [1.0] * 10


# --------------------------------------------------------------------------- the pipeline


def _unit(report, market=US):
    (unit,) = [u for u in report.units if u.market == market]
    return unit


def test_edited_lines_are_the_only_ones_spoken_again(series, tmp_path):
    folder, cfg = series
    settings = settings_for(tmp_path, cfg, codes=(US, MX))  # MX: Spanish subtitles, not reviewed
    resources = Resources()
    ep1 = folder / "fan01.mp4"
    first = _unit(run_episode(ep1, settings, resources=resources))
    assert first.status == "ok" and first.dub_lines["synthesized"] == [0, 1, 2, 3, 4]
    review_out = tmp_path / "review-out"
    written = core_review.export_episode(ep1, settings, resources, review_out)
    assert {p.name for p in written} >= {"fan01.en.srt", "fan01.en.tsv", "fan01.source.zh.srt", "fan01.source.zh.tsv"}
    table = (review_out / "fan01.en.tsv").read_text(encoding="utf-8")
    assert "合同在桌上。\tThe contract is on the desk." in table and "version=" in table.splitlines()[0]
    drop = folder / ".locpipe" / "review"
    srt = drop / "fan01.en.srt"
    srt.write_bytes((review_out / "fan01.en.srt").read_bytes())
    unchanged = _unit(run_episode(ep1, settings, resources=resources))  # dropped back as exported
    assert unchanged.review["translation"]["edited"] == []
    assert all(r["cached"] for r in unchanged.stages if r["stage"] != "review"), unchanged.stages
    edit_three(srt)

    tts_before = fb.CALLS["tts"]
    report = run_episode(ep1, settings, resources=resources)
    second, spanish = _unit(report), _unit(report, MX)
    assert all(r["cached"] for r in spanish.stages if r["stage"] != "qc"), spanish.stages  # not re-rendered
    assert fb.CALLS["tts"] - tts_before == 3
    assert second.dub_lines == {"stage_cached": False, "synthesized": [0, 2, 3], "reused": [1, 4]}
    assert second.review["translation"]["edited"] == [0, 2, 3]
    assert second.review["translation"]["file"] == "fan01.en.srt" and second.review["translation"]["mtime"] > 0
    shared = {r["stage"]: r["cached"] for r in second.stages}
    assert shared["translate"] and not shared["review"] and not shared["synthesize"]
    delivered = " ".join(ev.plaintext.replace("\n", " ") for ev in pysubs2.load(second.outputs["srt"]))
    assert "Zhou Min, at last." in delivered and "not today and not tomorrow" in delivered
    retimed = [ev for ev in pysubs2.load(second.outputs["srt"]) if "Then go" in ev.plaintext]
    assert retimed[0].start == 5050
    qc = json.loads(Path(second.outputs["qc"]).read_text(encoding="utf-8"))
    checks = {c["name"]: c for c in qc["checks"]}
    assert checks["reviewed_lines"]["value"] == 3 and "fan01.en.srt" in checks["reviewed_lines"]["detail"]

    # a rerun with nothing new: every stage from the store
    third = _unit(run_episode(ep1, settings, resources=resources))
    assert all(r["cached"] for r in third.stages) and third.dub_lines["stage_cached"]

    # the second episode says line 3 in the same scene: the approved line, no backend
    MT_LINES.clear()
    ep2 = _unit(run_episode(folder / "fan02.mp4", settings, resources=resources))
    assert "我不会签字的。" not in MT_LINES and "合同在桌上。" in MT_LINES
    delivered2 = " ".join(ev.plaintext.replace("\n", " ") for ev in pysubs2.load(ep2.outputs["srt"]))
    assert "not today and not tomorrow" in delivered2
    checks2 = {c["name"]: c for c in json.loads(Path(ep2.outputs["qc"]).read_text(encoding="utf-8"))["checks"]}
    assert checks2["tm_approved"]["value"] == 1 and "fan01.en.srt" in checks2["tm_approved"]["detail"]

    states = {(s.kind, s.state, s.edited) for s in [core_review.review_state(drop, "fan01", "en"),
                                                    core_review.review_state(drop, "fan01", "zh", source=True),
                                                    core_review.review_state(drop, "fan02", "en")]}
    assert states == {("translation", "reviewed", 3), ("source", "exported", 0), ("translation", "machine-only", 0)}


def test_bad_review_file_keeps_valid_edits_and_names_the_lines(series, tmp_path, caplog):
    folder, cfg, settings, resources, ep1, review_out = exported(series, tmp_path)
    srt = (review_out / "fan01.en.srt").read_text(encoding="utf-8")
    srt = srt.replace("The contract is on the desk.", "合同 is on the desk.")  # Chinese left in English
    srt = srt.replace("Then go.", "Then leave.")  # a valid edit
    srt = srt.replace("00:00:06,300 --> 00:00:07,600", "00:00:06,300 -> 00:00:07,600")  # broken timing line
    drop = tmp_path / "elsewhere"
    drop.mkdir()
    (drop / "fan01.en.srt").write_text(srt, encoding="utf-8")
    (drop / "exported").mkdir()
    (drop / "exported" / "fan01.en.json").write_bytes(
        (folder / ".locpipe" / "review" / "exported" / "fan01.en.json").read_bytes())
    with caplog.at_level("WARNING", logger="locpipe"):
        unit = _unit(run_episode(ep1, settings_for(tmp_path, cfg, review_dir=drop), resources=resources))
    assert unit.status == "ok" and unit.review["translation"]["edited"] == [3]
    problems = " | ".join(unit.review["translation"]["problems"])
    assert f"{drop / 'fan01.en.srt'}:6: cue 2: Chinese/CJK" in problems
    assert "no timing line" in problems and "4 cues in the file, 5 in the episode" in problems
    assert "fan01.en.srt" in caplog.text
    delivered = " ".join(ev.plaintext.replace("\n", " ") for ev in pysubs2.load(unit.outputs["srt"]))
    assert "Then leave." in delivered and "The contract is on the desk." in delivered and "合同" not in delivered

    # a re-export that fails (the market's translator is gone) leaves the earlier files alone
    before = (review_out / "fan01.en.srt").read_bytes()
    MT._factories.pop(MT_NAME)
    with pytest.raises(StageError, match="translate"):
        core_review.export_episode(ep1, settings_for(tmp_path, cfg, tm_path=tmp_path / "other-tm.sqlite"),
                                   Resources(), review_out)
    MT.register(MT_NAME)(ScriptMT)
    assert (review_out / "fan01.en.srt").read_bytes() == before
    assert not list(review_out.glob(".*.tmp"))


def test_cli_review_export_edit_run_status(series, tmp_path, capsys):
    """The commands a loc op types, with real ffmpeg: run, review export, edit, run, status."""
    from locpipe.cli import main

    folder, cfg = series
    out, work, review_out = tmp_path / "out", tmp_path / "work", tmp_path / "for-linguist"
    common = ["--config-dir", str(cfg), "--markets", US, "--asr", ASR_NAME, "--no-ocr", "--work", str(work),
              "--ledger", str(tmp_path / "ledger.sqlite")]
    episode = str(folder / "fan01.mp4")
    assert main(["run", episode, "--out", str(out), *common]) == 0
    assert main(["review", "export", episode, "--out", str(review_out), *common]) == 0
    printed = capsys.readouterr().out
    assert str(review_out / "fan01.en.srt") in printed
    drop = folder / ".locpipe" / "review"
    (drop / "fan01.en.srt").write_bytes((review_out / "fan01.en.srt").read_bytes())
    edit_three(drop / "fan01.en.srt")
    assert main(["run", episode, "--out", str(out), *common]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    (unit,) = manifest["units"]
    assert unit["dub_lines"]["synthesized"] == [0, 2, 3] and unit["review"]["translation"]["edited"] == [0, 2, 3]
    capsys.readouterr()
    assert main(["review", "status", str(folder), "--config-dir", str(cfg), "--markets", US, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {(r["episode"], r["language"], r["state"], r["edited"]) for r in rows} == {
        ("fan01", "zh", "exported", 0), ("fan01", "en", "reviewed", 3), ("fan02", "zh", "machine-only", 0),
        ("fan02", "en", "machine-only", 0)}


def test_review_folder_reaches_farm_units(tmp_path):
    """``farm submit --review DIR``: the folder travels in the unit and back into the worker's settings."""
    from locpipe.farm.units import UnitSpec, run_settings

    spec = UnitSpec(unit_id="e--us--x", episode="e", source=str(tmp_path / "e.mp4"), market="us", distributor="d",
                    config_hash="h", out_dir=str(tmp_path), work_dir=str(tmp_path / "w"), config_dir=str(tmp_path),
                    review=str(tmp_path / "edits"))
    assert run_settings(UnitSpec.model_validate_json(spec.model_dump_json()), with_market=False).review_dir == \
        tmp_path / "edits"
    assert core_review.review_folder(tmp_path / "series") == tmp_path / "series" / ".locpipe" / "review"


def test_real_voice_clips_and_rewrites_come_back_from_the_cache(tmp_path):
    """Piper speaks two lines once; the second dub of the same lines (one overflowing, rewritten)
    asks neither the voice nor the shortener again, and the track is the same to the byte."""
    from locpipe.artifacts import TranslatedCue, Translation
    from locpipe.backends.tts.base import get_tts_backend
    from locpipe.config import DubConfig, MarketConfig
    from locpipe.config.models import Market, RenderProfile
    from locpipe.localize.condense import make_shortener
    from locpipe.stages.synthesize import synthesize_dub

    market = Market(config=MarketConfig(code="us-test", name="test", language="en",
                                        dub=DubConfig(enabled=True, voice="piper:en_US-joe-medium", max_stretch=1.25)),
                    profile=RenderProfile(name="app"), source=Path("us-test.yaml"))
    cues = [TranslatedCue(index=0, start=0.4, end=1.9, source_text="我才不告诉你，我不信任你。",
                          text="Well, I am not going to tell you, you know, because I do not trust you."),
            TranslatedCue(index=1, start=2.7, end=4.0, source_text="走吧。", text="Let's go, Wen Jie.")]
    translation = Translation(language="en", backend="test", cues=cues)
    rules = make_shortener("en", [])
    asked: list[int] = []

    def shorten(index, source, text, budget):
        asked.append(index)
        return rules(index, source, text, budget)

    tts, dubs = get_tts_backend("piper"), []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        clips = ClipCache(tmp_path / "clips", tts.version, "rules")
        dubs.append(synthesize_dub(translation, market, 5.0, tmp_path / name, tts, shorten=shorten, clips=clips))
    assert dubs[0].line_cache == {"hits": [], "misses": [0, 1]} and dubs[0].lines[0].rewritten_by == "rules"
    assert dubs[1].line_cache == {"hits": [0, 1], "misses": []} and asked == [0]
    assert (tmp_path / "a" / "dub.wav").read_bytes() == (tmp_path / "b" / "dub.wav").read_bytes()


def test_corrected_transcript_is_the_source_of_the_translation(series, tmp_path):
    """The Chinese review form edited (one line's text, one refused English line): the edited
    line is translated again, the manifest names the file and the refused line."""
    folder, _cfg, settings, resources, ep1, review_out = exported(series, tmp_path)
    srt = (review_out / "fan01.source.zh.srt").read_text(encoding="utf-8")
    srt = srt.replace("那你走吧。", "明天见。").replace("合同在桌上。", "The contract.")
    (folder / ".locpipe" / "review" / "fan01.source.zh.srt").write_text(srt, encoding="utf-8")
    MT_LINES.clear()
    unit = _unit(run_episode(ep1, settings, resources=resources))
    assert unit.review["source"]["edited"] == [3] and "no Chinese" in unit.review["source"]["problems"][0]
    assert "fan01.source.zh.srt:6:" in unit.review["source"]["problems"][0]
    delivered = " ".join(ev.plaintext.replace("\n", " ") for ev in pysubs2.load(unit.outputs["srt"]))
    assert "See you tomorrow." in delivered and "Then go." not in delivered and "on the desk" in delivered
