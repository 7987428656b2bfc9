"""Promo cuts: the choice of moments (pure), and whole clips made by the real pipeline.

Episodes are generated here: shots of different test patterns (real scene cuts), a tone
per line whose loudness varies like a quiet talk turning into a shouting match, and a
Chinese sidecar script (the transcript source), so the pipeline runs for real with fake
MT/TTS engines only (``fake_backends`` plus a translator here that keeps punctuation). A
16:9 source, a too-short episode and one without dialogue are cut too. Every clip is
checked on the file: duration, size, loudness, cut points between lines, no Chinese.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from collections import Counter
from pathlib import Path

import fake_backends as fb
import numpy as np
import pysubs2
import pytest
import yaml

from locpipe.artifacts import Cue
from locpipe.backends.asr.base import ASR
from locpipe.backends.mt.base import MT, TranslationRequest
from locpipe.cli import main
from locpipe.config import DEFAULT_CONFIG_DIR, load_market
from locpipe.core.pipeline import run_episode
from locpipe.core.promo import promo_episode
from locpipe.core.resources import Resources
from locpipe.core.settings import RunSettings
from locpipe.media.ffmpeg import ffmpeg_exe, measure_loudness
from locpipe.media.probe import probe
from locpipe.stages import promo_select as ps
from locpipe.stages.promo_signals import parse_ratings, parse_scene_cuts
from locpipe.stages.translate import CJK_RE

# --------------------------------------------------------------------------- generated episodes

#: (start, end, text, loudness 0-1): a calm start, a fight, a reveal at the end
SCRIPT = [
    (0.8, 2.4, "早上好，今天开会吗？", 0.15),
    (3.2, 5.0, "对，十点在会议室。", 0.12),
    (6.0, 7.6, "你看到合同了吗", 0.14),
    (8.4, 10.0, "看到了，没问题。", 0.12),
    (11.5, 12.6, "你竟然骗我！", 0.7),
    (12.8, 13.8, "我没有！", 0.75),
    (14.0, 15.3, "证据就在这里！", 0.8),
    (15.5, 16.6, "不可能！", 0.85),
    (16.8, 18.4, "你给我滚出去！", 0.9),
    (20.0, 21.6, "我们先吃饭吧。", 0.12),
    (22.5, 24.0, "好的，我去订位子。", 0.1),
    (25.0, 26.4, "明天见。", 0.1),
    (27.5, 29.2, "等等，你怀孕了？", 0.6),
    (29.6, 31.4, "孩子是你的！", 0.8),
]
SHOTS = ["testsrc2", "smptebars", "rgbtestsrc", "testsrc", "smptehdbars", "pal100bars"]
TONE_HZ = 300.0


def make_episode(path: Path, *, seconds: float, size: str = "360x640", script=SCRIPT, sidecar: bool = True) -> Path:
    """A real H.264/AAC episode: one test pattern per shot (a scene cut between shots), a
    tone for every line at its loudness, silence between lines; the lines as ``EP.zh.srt``."""
    rate = 48000
    audio = np.zeros(int(seconds * rate), dtype=np.float32)
    for a, b, _text, level in script:
        if b > seconds:
            continue
        t = np.arange(int((b - a) * rate)) / rate
        audio[int(a * rate):int(a * rate) + t.size] = level * np.sin(2 * np.pi * TONE_HZ * t) * (
            0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    wav = path.with_suffix(".wav")
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    shot = seconds / len(SHOTS)
    args = []
    for src in SHOTS:
        args += ["-f", "lavfi", "-i", f"{src}=size={size}:rate=30:duration={shot:.3f}"]
    args += ["-i", str(wav)]
    graph = "".join(f"[{i}:v]setsar=1,format=yuv420p[v{i}];" for i in range(len(SHOTS)))
    graph += "".join(f"[v{i}]" for i in range(len(SHOTS))) + f"concat=n={len(SHOTS)}:v=1:a=0[v]"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", *args, "-filter_complex", graph, "-map", "[v]",
                    "-map", f"{len(SHOTS)}:a", "-c:v", "libx264", "-preset", "ultrafast", "-g", "30",
                    "-c:a", "aac", "-t", f"{seconds:.3f}", str(path)], check=True)
    wav.unlink()
    if sidecar:
        subs = pysubs2.SSAFile()
        for a, b, text, _ in script:
            if b <= seconds:
                subs.events.append(pysubs2.SSAEvent(start=int(a * 1000), end=int(b * 1000), text=text))
        subs.save(str(path.with_suffix(".zh.srt")))
    return path


# --------------------------------------------------------------------------- engines and configs

MT_NAME = "promo-mt"
SILENT_ASR = "promo-silent-asr"
WORDS = {"骗": "lied to", "滚": "get out", "证据": "proof", "不可能": "impossible", "怀孕": "pregnant",
         "孩子": "the child", "没有": "did not", "合同": "contract", "开会": "meeting"}


def english(text: str, index: int) -> str:
    """A deterministic 'translation' that keeps what the promo scores: punctuation and key words."""
    words = [en for zh, en in WORDS.items() if zh in text] or [f"line {index}"]
    end = "!" if "！" in text else "?" if "？" in text else "."
    return f"You {' and '.join(words)}{end}".replace("You line", "Line")


class PromoMT(fb.FakeMT):
    def translate(self, request: TranslationRequest) -> list[str]:
        fb.CALLS[f"mt:{request.target_base}"] += 1
        return [english(c.text, c.index) for c in request.cues]


class SilentASR(fb.FakeASR):
    def transcribe(self, wav: Path, *, clip=None) -> tuple[list[Cue], list[dict]]:
        fb.CALLS["asr"] += 1
        return [], []


TINY_SOCIAL = {**fb.TINY_PROFILE, "name": "tiny-social", "safe_zone": {"x0": 22, "y0": 90, "x1": 338, "y1": 416}}
PROMO = {"enabled": True, "count": 2, "length": 12, "end_card": {"text": "Watch the full episode in the app",
                                                                 "seconds": 2}, "render_profile": "tiny-social"}
MARKETS = {
    "us-p": {"name": "US promo test (dub)", "language": "en", "render_profile": "tiny",
             "dub": {"enabled": True, "voice": f"{fb.TTS_NAME}:{fb.VOICE}", "background": "duck"},
             "subtitles": {**fb.TINY_SUBTITLES, "position": "fixed"}, "watermark": {"visible": True, "size": 14},
             "translation": {"backends": [MT_NAME]}, "promo": PROMO},
    "jp-p": {"name": "JP promo test (subs)", "language": "ja", "render_profile": "tiny",
             "dub": {"enabled": False, "background": "duck"}, "subtitles": fb.TINY_SUBTITLES,
             "translation": {"backends": [MT_NAME]}, "promo": {**PROMO, "count": 1,
                                                               "end_card": {"text": "続きはアプリで", "seconds": 2}}},
    "us-s": {"name": "US social promo test (subs)", "language": "en", "render_profile": "tiny",
             "dub": {"enabled": False, "background": "duck"}, "subtitles": fb.TINY_SUBTITLES,
             "translation": {"backends": [MT_NAME]},
             "promo": {"count": 1, "length": 15, "end_card": {"text": "Watch the full episode in the app"}}},
}


def write_configs(root: Path) -> Path:
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "markets").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(fb.TINY_PROFILE), encoding="utf-8")
    (root / "profiles" / "tiny-social.yaml").write_text(yaml.safe_dump(TINY_SOCIAL), encoding="utf-8")
    shutil.copyfile(DEFAULT_CONFIG_DIR / "profiles" / "social.yaml", root / "profiles" / "social.yaml")
    for code, cfg in MARKETS.items():
        (root / "markets" / f"{code}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return root


def settings_for(base: Path, codes: list[str], asr: str = fb.ASR_NAME) -> RunSettings:
    cfg = write_configs(base / "configs")
    return RunSettings(out_dir=base / "out", work_dir=base / "work", config_dir=cfg, asr_backend=asr,
                       markets=tuple(load_market(cfg, c) for c in codes), ocr=False, speakers=False,
                       ledger_path=base / "ledger.sqlite")


@pytest.fixture(scope="module", autouse=True)
def engines():
    with fb.registered():
        MT.register(MT_NAME)(PromoMT)
        ASR.register(SILENT_ASR)(SilentASR)
        try:
            yield
        finally:
            MT._factories.pop(MT_NAME, None)
            ASR._factories.pop(SILENT_ASR, None)


@pytest.fixture(scope="module")
def series(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("promo-series")
    return {"ep": make_episode(d / "ep01.mp4", seconds=33.0),
            "wide": make_episode(d / "wide01.mp4", seconds=33.0, size="640x360"),
            "short": make_episode(d / "short01.mp4", seconds=8.0),
            "mute": make_episode(d / "mute01.mp4", seconds=20.0, script=[], sidecar=False)}


@pytest.fixture(scope="module")
def episode_run(tmp_path_factory, series):
    base = tmp_path_factory.mktemp("promo-run")
    settings = settings_for(base, ["us-p", "jp-p"])
    resources = Resources()
    calls = Counter(fb.CALLS)
    report = run_episode(series["ep"], settings, resources=resources)
    return {"report": report, "settings": settings, "resources": resources, "calls": Counter(fb.CALLS) - calls}


def promo_doc(settings: RunSettings, code: str, episode: str) -> dict:
    return json.loads((settings.out_dir / code / "promo" / f"{episode}-promo.json").read_text(encoding="utf-8"))


def tone_rms(video: Path, start: float, end: float) -> float:
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vn", "-ac", "1", "-ar", "16000",
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    audio = np.frombuffer(raw, dtype="<f4")[int(start * 16000):int(end * 16000)]
    return float(np.sqrt(np.mean(audio ** 2))) if audio.size else 0.0


# --------------------------------------------------------------------------- pure: the choice


def lines_of(script=SCRIPT) -> list[ps.PromoLine]:
    rms = [20 * np.log10(level) for *_, level in script]
    energy = ps.relative_energy(rms)
    return [ps.PromoLine(index=i, start=a, end=b, source=t, target=english(t, i), speaker="AB"[i % 2],
                         energy_db=e) for i, ((a, b, t, _), e) in enumerate(zip(script, energy))]


def test_line_signals_are_named_and_explained():
    line = ps.PromoLine(index=3, start=0, end=1, source="你竟然打我耳光！", target="You slapped me!", energy_db=9.0)
    sig = ps.line_signals(line)
    assert set(sig) == {"punctuation", "turning_point", "energy"}
    assert sig["energy"] == 2.0  # capped
    assert ps.turning_hits(line.source) == ["耳光", "竟然", "打"]
    calm = ps.PromoLine(index=4, start=0, end=1, source="早上好。", target="Good morning.", energy_db=-1.0)
    assert ps.line_signals(calm) == {}
    why = " ".join(ps.line_reasons(line))
    assert "exclamation" in why and "耳光" in why and "raised voice" in why


def test_plan_picks_the_fight_and_the_cliffhanger_and_fills_the_length_exactly():
    lines = lines_of()
    plan = ps.plan_promos(lines, [5.5, 11.0, 19.2], duration=33.0, fps=30.0, length=12.0, count=3, end_card=2.0)
    assert len(plan.cuts) >= 2
    first = plan.cuts[0]
    used = {i for s in first.spans for i in s.lines}
    assert {4, 5, 6, 7, 8} & used and {12, 13} <= used | {i for c in plan.cuts for s in c.spans for i in s.lines}
    for cut in plan.cuts:
        assert cut.content <= 10.0 + 1e-6 and cut.end_card >= 2.0 - 1e-6
        assert abs(cut.content + cut.end_card - 12.0) < 1e-6
        assert cut.number == 1 or cut.content >= ps.MIN_FILL * 10.0
        assert ps.cuts_inside_speech(cut, lines) == []
        for s in cut.spans:  # on the frame grid, in the silence around its lines
            assert abs(s.start * 30 - round(s.start * 30)) < 1e-6 and abs(s.end * 30 - round(s.end * 30)) < 1e-6
            assert lines[s.lines[0]].start >= s.start and lines[s.lines[-1]].end <= s.end
        assert cut.hook_line is not None
    # no line is used by two clips
    all_lines = [i for c in plan.cuts for s in c.spans for i in s.lines]
    assert len(all_lines) == len(set(all_lines))
    # the calm small talk scores below the fight
    assert plan.line_scores[1] == {} and sum(plan.line_scores[8].values()) > 3


def test_span_boundaries_prefer_a_scene_cut_in_the_silence():
    lines = lines_of()
    assert ps.start_boundary(lines, 4, [11.0], 30.0) == pytest.approx(11.0)
    assert ps.start_boundary(lines, 4, [], 30.0) == pytest.approx(11.3)
    # a cut inside the previous line is never used; the pad is at most half the gap
    assert ps.start_boundary(lines, 5, [12.7], 30.0) >= 12.6
    assert ps.end_boundary(lines, 4, [], 30.0, 33.0) <= 12.8


def test_words_inside_a_line_count_as_speech():
    line = ps.PromoLine(index=0, start=1.0, end=3.0, source="a", words=((1.0, 1.5), (3.1, 3.6)))
    cut = ps.PromoCut(number=1, spans=(ps.Span(3.3, 8.0, (0,), 1.0, {}, ()),), length=6, end_card=1.3,
                      hook_line=0, score=1.0)
    assert ps.cuts_inside_speech(cut, [line]) == [3.3]  # after the line's end, but inside a word


def test_short_and_silent_episodes_get_a_note_or_a_scene_clip():
    short = ps.plan_promos(lines_of()[:3], [], duration=8.0, fps=30, length=12, count=3, end_card=2)
    assert short.cuts == () and "shorter" in short.notes[0]
    mute = ps.plan_promos([], [4.0, 13.2], duration=20.0, fps=30, length=12, count=3, end_card=2)
    assert len(mute.cuts) == 1 and "no dialogue" in mute.notes[0]
    (span,) = mute.cuts[0].spans
    assert span.start == pytest.approx(13.2) and span.end == pytest.approx(20.0)
    assert mute.cuts[0].end_card == pytest.approx(12 - 6.8)


def test_signal_parsers():
    assert parse_scene_cuts("[Parsed_showinfo_2 @ 0x1] n:0 pts:3300 pts_time:3.3 duration:...\n"
                            "n:1 pts_time:11.0333 x") == [3.3, 11.033]
    assert parse_ratings('{"1": "7", "2": "x", "3": "12"}', 4) == [7, None, 1, None]
    assert parse_ratings("not json", 2) == [None, None]
    assert ps.relative_energy([-20.0, None, -10.0, -30.0]) == [0.0, None, 10.0, -10.0]


# --------------------------------------------------------------------------- the pipeline: run with promo enabled


def test_run_makes_the_promos_with_the_episode(episode_run):
    report, settings = episode_run["report"], episode_run["settings"]
    assert {u.market: u.status for u in report.units} == {"us-p": "ok", "jp-p": "ok"}
    for u in report.units:
        assert "promo" in u.outputs and "promo_error" not in u.outputs
        assert any(r["stage"] == f"promo_{u.market}" for r in u.stages)
    doc = promo_doc(settings, "us-p", "ep01")
    assert [c["number"] for c in doc["clips"]] == [1, 2]
    lines = {ln["index"]: ln for ln in doc["lines"]}
    for clip in doc["clips"]:
        video = Path(clip["video"])
        assert video.name == f"ep01-promo-{clip['number']}.mp4" and video.parent == settings.out_dir / "us-p" / "promo"
        info = probe(video)
        assert abs(info.duration - 12.0) <= 0.1, info.duration
        assert (info.width, info.height) == (360, 640)
        assert clip["qc"]["passed"], clip["qc"]
        checks = {c["name"] for c in clip["qc"]["checks"]}
        assert {"promo_duration", "promo_cuts_between_lines", "promo_safe_zone", "promo_loudness",
                "promo_cjk_text"} <= checks
        assert abs(measure_loudness(video).integrated - (-14.0)) <= 1.0
        assert Path(clip["sheet"]).stat().st_size > 1000
        for s in clip["spans"]:  # every span's cut points lie between lines
            for ln in lines.values():
                assert not (ln["start"] + 0.02 < s["start"] < ln["end"] - 0.02)
                assert not (ln["start"] + 0.02 < s["end"] < ln["end"] - 0.02)
            assert s["why"] and s["score"] == pytest.approx(sum(s["signals"].values()), abs=0.01)
        assert not CJK_RE.search(clip["hook"])
    # the first clip holds the fight (the loudest, most exclaimed lines)
    first_lines = {i for s in doc["clips"][0]["spans"] for i in s["lines"]}
    assert first_lines & {4, 5, 6, 7, 8}
    # the end card is silent and the clip's last second is not the dub
    first = Path(doc["clips"][0]["video"])
    assert tone_rms(first, 11.0, 11.9) < 0.01 < tone_rms(first, 0.0, 10.0)


def test_cjk_market_clips_and_hook_in_its_language(episode_run):
    doc = promo_doc(episode_run["settings"], "jp-p", "ep01")
    assert len(doc["clips"]) == 1 and doc["language"] == "ja"
    names = {c["name"] for c in doc["clips"][0]["qc"]["checks"]}
    assert "promo_cjk_text" not in names  # Chinese characters are not a leak in Japanese


def test_promo_command_reuses_every_cached_stage(episode_run, series):
    """``locpipe promo`` after the run: no ASR, MT or TTS call, every upstream stage a cache hit."""
    settings, resources = episode_run["settings"], episode_run["resources"]
    assert episode_run["calls"]["mt:en"] >= 1 and episode_run["calls"]["tts"] >= 1
    calls = Counter(fb.CALLS)
    docs = promo_episode(series["ep"], settings, resources, length=10, count=1)
    assert Counter(fb.CALLS) - calls == Counter()
    for doc in docs:
        assert doc["made_stages"] == []
        cached = {r["stage"]: r["cached"] for r in doc["stages"]}
        assert cached["transcribe"] and cached["translate"] and cached["mix"]
        assert not cached[f"promo_{doc['market']}"]  # a new length: new clips
        (clip,) = doc["clips"]
        assert abs(probe(Path(clip["video"])).duration - 10.0) <= 0.1


def test_wide_source_is_cropped_to_9_16(tmp_path, series):
    settings = settings_for(tmp_path, ["us-p"])
    docs = promo_episode(series["wide"], settings, Resources(), count=1)
    (clip,) = docs[0]["clips"]
    info = probe(Path(clip["video"]))
    assert (info.width, info.height) == (360, 640) and abs(info.duration - 12.0) <= 0.1
    assert clip["qc"]["passed"], clip["qc"]


def test_short_episode_gets_a_note_and_keeps_its_export(tmp_path, series):
    settings = settings_for(tmp_path, ["us-p"])
    report = run_episode(series["short"], settings, resources=Resources())
    (unit,) = report.units
    assert unit.status == "ok" and Path(unit.outputs["video"]).exists()
    doc = json.loads(Path(unit.outputs["promo"]).read_text(encoding="utf-8"))
    assert doc["clips"] == [] and "shorter than the 12 s promo" in doc["notes"][0]


def test_episode_without_dialogue_gets_one_clip_from_its_last_scenes(tmp_path, series):
    settings = settings_for(tmp_path, ["us-p"], asr=SILENT_ASR)
    report = run_episode(series["mute"], settings, resources=Resources())
    (unit,) = report.units
    assert unit.status == "ok", unit.error
    doc = json.loads(Path(unit.outputs["promo"]).read_text(encoding="utf-8"))
    assert "no dialogue" in doc["notes"][0]
    (clip,) = doc["clips"]
    assert clip["hook"] == "" and abs(probe(Path(clip["video"])).duration - 12.0) <= 0.1
    (span,) = clip["spans"]
    assert span["end"] == pytest.approx(20.0, abs=0.05)


def test_qc_report_lists_the_clips_with_their_contact_sheets(episode_run):
    import time

    from locpipe.core.manifest import write_manifest
    from locpipe.report import build_report

    settings = episode_run["settings"]
    write_manifest(settings.out_dir, [episode_run["report"]], settings, time.perf_counter())
    page = build_report(settings.out_dir).read_text(encoding="utf-8")
    assert "Promo cuts" in page and "ep01-promo-1.png" in page and "promo_cuts_between_lines" in page
    rows = json.loads((settings.out_dir / "qc" / "report.json").read_text(encoding="utf-8"))
    promos = [r for r in rows if "promo" in r]
    assert promos and all(r["qc_passed"] for r in promos)


def test_promo_command_makes_social_1080x1920_clips(tmp_path, series):
    """``locpipe promo SERIES EP``: the bundled social profile (9:16 1080x1920, its safe zone)."""
    cfg = write_configs(tmp_path / "configs")
    out = tmp_path / "out"
    code = main(["promo", str(series["ep"].parent), "ep01", "--out", str(out), "--markets", "us-s",
                 "--config-dir", str(cfg), "--asr", fb.ASR_NAME, "--no-ocr", "--ledger", str(tmp_path / "l.sqlite")])
    assert code == 0
    doc = promo_doc(RunSettings(out_dir=out, work_dir=out, markets=()), "us-s", "ep01")
    (clip,) = doc["clips"]
    info = probe(Path(clip["video"]))
    assert (info.width, info.height) == (1080, 1920) and abs(info.duration - 15.0) <= 0.1
    assert doc["profile"] == "social" and clip["qc"]["passed"], clip["qc"]
    assert not (out / "us-s" / "ep01.mp4").exists()  # the promo command renders no episode export


def test_local_model_rates_a_slap_above_small_talk():
    """The packaged Qwen model (where installed) in one short request: the slap outranks the greeting.

    (Measured: 0 / 9 / 0 — the 1.5B model misses "you are fired", which the rules' 开除 catches.)"""
    from locpipe.backends.mt.base import get_mt_backend
    from locpipe.errors import BackendUnavailable
    from locpipe.stages.promo_signals import llm_ratings

    backend = get_mt_backend("local-llm")
    try:
        backend.check_available()
    except BackendUnavailable as exc:
        pytest.skip(f"local model not installed here: {exc}")
    lines = ["早上好，今天天气不错。", "你竟然敢打我耳光！我要和你离婚！", "林晓，你被开除了！"]
    calm, slap, fired = llm_ratings(backend, lines)
    assert None not in (calm, slap, fired)
    assert slap > calm


def test_boundaries_keep_clear_of_words_that_start_before_their_cue():
    """Sidecar/OCR cue times come from the picture: a word heard before the cue starts moves the cut."""
    lines = [ps.PromoLine(index=0, start=1.5, end=2.9, source="陆总，您找我？", words=((1.28, 1.6), (1.6, 2.9))),
             ps.PromoLine(index=1, start=3.4, end=5.9, source="你签的？", words=((3.3, 5.9),))]
    assert ps.start_boundary(lines, 0, [], 30.0) <= 1.28
    assert ps.start_boundary(lines, 1, [], 30.0) <= 3.3
    plan = ps.plan_promos(lines, [], duration=20.0, fps=30.0, length=6.0, count=1, end_card=2.0)
    assert all(ps.cuts_inside_speech(c, lines) == [] for c in plan.cuts)


def test_promo_command_names_an_unknown_episode(tmp_path):
    from locpipe.cli.promo import select_episodes
    from locpipe.errors import ConfigError

    found = [tmp_path / "ep01.mp4", tmp_path / "ep02.mp4"]
    assert select_episodes(found, []) == found
    assert select_episodes(found, ["ep02", "ep01.mp4"]) == [found[1], found[0]]
    with pytest.raises(ConfigError, match="ep03"):
        select_episodes(found, ["ep03"])
