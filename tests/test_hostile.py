"""Hostile and odd input never hangs, injects or renames (issue 17).

Real files, real ffmpeg, the real pipeline around fake ASR/TTS engines (``fake_backends``)
and, where a translation backend is needed, the real OpenAI-compatible ``llm`` backend
talking to a fake chat server on 127.0.0.1 (``fakes.fake_chat_server``). The clips are a
few seconds long and made once per module.

1. backend text is cleaned and bounded (``localize.sanitize``); the splitter is near-linear
2. sidecars read back by ffmpeg and pysubs2 hold exactly the cues written
3. odd paths and names: ``ep:1.mp4``, an 83-character Chinese name, names kept as they are
4. truncated or corrupt files are refused at ingest, before any model runs
5. every config file is validated before any episode; global options after the command
6. SIGINT/SIGTERM: no traceback, counts, a manifest, exit 130, resume from the cache
"""

from __future__ import annotations

import dataclasses
import html
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import fake_backends as fb
import pysubs2
import pytest
import yaml
from conftest import make_clip
from fakes import fake_chat_server

from locpipe.artifacts import Cue, SubtitleEvent, SubtitleTrack, Transcript
from locpipe.cli import build_parser, main, options
from locpipe.config import load_market
from locpipe.core.batch import check_unique_names, discover_episodes, run_batch
from locpipe.core.names import MAX_EXPORT_STEM_BYTES, episode_name, file_stem, work_folder_name
from locpipe.core.pipeline import run_episode
from locpipe.core.resources import Resources
from locpipe.core.settings import RunSettings
from locpipe.errors import ConfigError, InputError
from locpipe.localize.sanitize import clean_cue, clean_for_language, clean_line, cue_limit
from locpipe.media import subtitles
from locpipe.media.ass import build_ass
from locpipe.media.ffmpeg import ffmpeg_exe, media_input, run_ffmpeg
from locpipe.media.probe import check_complete, probe
from locpipe.stages import segment
from locpipe.stages.translate import build_translation

ROOT = Path(__file__).resolve().parent.parent
HOSTILE_MARKET, PLAIN_MARKET = "hx", "hf"
PROFILE, SUBTITLES = fb.TINY_PROFILE, fb.TINY_SUBTITLES
MARKETS = {
    HOSTILE_MARKET: {"name": "hostile llm", "language": "en", "render_profile": "tiny",
                     "dub": {"enabled": False, "background": "duck"}, "subtitles": SUBTITLES,
                     "translation": {"backends": ["llm"]}},
    PLAIN_MARKET: {"name": "fake mt", "language": "en", "render_profile": "tiny",
                   "dub": {"enabled": False, "background": "duck"}, "subtitles": SUBTITLES,
                   "translation": {"backends": [fb.MT_NAME]}},
}
INJECTION = "Hello\n\n00:00:01,000 --> 00:00:30,000\nINJECTED {\\pos(0,0)\\fs200}BIG \u202eevil\u202c <b>x</b>"
RLO_CHARS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def fakes():
    with fb.registered():
        yield


@pytest.fixture(scope="module")
def configs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("configs")
    (root / "profiles").mkdir()
    (root / "markets").mkdir()
    (root / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(PROFILE), encoding="utf-8")
    for code, cfg in MARKETS.items():
        (root / "markets" / f"{code}.yaml").write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 3 s 360x640 H.264/AAC clip with its index at the front (as delivered files are)."""
    d = tmp_path_factory.mktemp("clip")
    raw = make_clip(d / "raw.mp4", seconds=3.0)
    out = d / "clip.mp4"
    run_ffmpeg(["-i", str(raw), "-c", "copy", "-movflags", "+faststart", str(out)])
    return out


def settings_for(base: Path, configs: Path, codes: list[str], **kw) -> RunSettings:
    kw = {"asr_backend": fb.ASR_NAME, "ocr": False, "speakers": False, **kw}
    return RunSettings(out_dir=base / "out", work_dir=base / "work",
                       markets=tuple(load_market(configs, c) for c in codes), config_dir=configs,
                       ledger_path=base / "ledger.sqlite", **kw)


def ffmpeg_cues(path: Path) -> list[tuple[int, int, str]]:
    """(start ms, end ms, text) of every cue as ffmpeg decodes the file (its ASS rendering)."""
    out = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ass", "-"], check=True,
                         capture_output=True, text=True).stdout
    cues = []
    for line in out.splitlines():
        if line.startswith("Dialogue:"):
            fields = line.split(",", 9)
            cues.append((_ms(fields[1]), _ms(fields[2]), fields[9].replace("\\N", "\n")))
    return cues


def _ms(stamp: str) -> int:
    h, m, s = stamp.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)


def pysubs2_cues(path: Path) -> list[tuple[int, int, str]]:
    return [(ev.start, ev.end, ev.plaintext) for ev in pysubs2.load(str(path), encoding="utf-8")]


# --------------------------------------------------------------------------- 1. text is cleaned and bounded


def test_clean_line_removes_controls_bidi_markup_and_line_breaks_but_keeps_joiners():
    persian = "می\u200cخواهم"  # ZWNJ belongs to the word
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # ZWJ emoji sequence
    text = clean_line(f"{INJECTION}\x00\x1b\u200b\ufeff\u2066x\u2069 {persian} {family}\r\n\u2028end")
    assert not any(ch in text for ch in RLO_CHARS + "\n\r\x00\x1b\u200b\ufeff\u2028")
    assert "{" not in text and "<b>" not in text and "-->" not in text
    assert persian in text and family in text and text.endswith("end")
    assert "INJECTED BIG evil x" in text and text.startswith("Hello 00\u223600\u223601,000 → 00\u223600\u223630,000")


def test_a_runaway_line_is_shortened_or_rejected_alone(tmp_path):
    limit = cue_limit(2.0, 20, 84)
    assert limit == 168  # two full events: never below what the segmenter can show
    shortened = clean_cue("word " * 60, 2.0, 20, 84)
    assert len(shortened.text) <= limit and shortened.text.endswith("…") and "shortened" in shortened.problem
    rejected = clean_cue("x" * 5000, 2.0, 20, 84)
    assert rejected.text == "" and "5000 characters" in rejected.problem and "rejected" in rejected.problem
    assert clean_cue("Where were you last night?", 2.0, 20, 84).problem == ""

    cues = [Cue(index=0, start=0.0, end=2.0, text="你好"), Cue(index=1, start=2.0, end=4.0, text="昨晚你去哪了？")]
    transcript = Transcript(language="zh", backend="test", model="test", cues=cues)
    tr = build_translation(transcript, ["Hi.", "y" * 5000], "en", "test")
    assert [c.text for c in tr.cues] == ["Hi.", ""]
    assert any(n.startswith("cue 1: text limit:") for n in tr.notes)
    track = segment.build_track(tr, segment.rules_for("en"), duration=5, fps=30, out_dir=tmp_path)
    assert [v for v in track.violations if "text limit" in v["problems"][0]], track.violations  # QC fails it


def test_cleaning_a_megabyte_answer_is_bounded():
    started = time.perf_counter()
    result = clean_for_language("é" * 1_000_000, 3.0, "en")
    assert result.text == "" and "rejected" in result.problem
    assert time.perf_counter() - started < 5.0  # generous: the work is cut to a multiple of the limit


@pytest.mark.parametrize("language", ["en", "ja"])
def test_splitter_work_grows_linearly_with_the_line(language):
    """The splitter on 10,000 characters: its work counter stays within a constant per token,
    and doubling the line about doubles the work (the old splitter was cubic)."""
    rules = segment.rules_for(language)
    unit = "the boss said that we would never see him again, and so it was; " if rules.spaced else "去看电影，好吗？"
    steps = {}
    for size in (5_000, 10_000):
        text = (unit * (size // len(unit) + 1))[:size].strip()
        tokens = segment._tokens(text, rules.spaced)
        n = segment.fewest_chunks(tokens, rules, language)
        work = segment.SplitWork()
        chunks = segment.split_balanced(text, n, rules, language, work)
        assert chunks is not None and segment._join(chunks, rules.spaced) == segment._join(tokens, rules.spaced)
        assert all(segment.text_width(c, language) <= rules.max_chars_per_line * rules.max_lines for c in chunks)
        assert work.steps <= 60 * len(tokens), (size, work.steps, len(tokens))
        steps[size] = work.steps
    assert steps[10_000] <= 3 * steps[5_000]
    started = time.perf_counter()
    events = segment.segment_cue((unit * 400)[:10_000], 0.0, 3.0, 3.0, rules, language, 0)
    assert events and time.perf_counter() - started < 5.0  # under 0.2 s here; generous for a shared machine


def test_a_giant_word_does_not_loop():
    rules = segment.rules_for("en")
    events = segment.segment_cue("a " + "x" * 10_000 + " b", 0.0, 3.0, 3.0, rules, "en", 0)
    assert [ev.lines for ev in events][0] == ["a"] and len(events) == 3


# --------------------------------------------------------------------------- 2. sidecars read back exactly


def _events(texts: list[str]) -> list[SubtitleEvent]:
    return [SubtitleEvent(start=1.0 + 2 * i, end=2.5 + 2 * i, lines=[t], cue_index=i) for i, t in enumerate(texts)]


def test_sidecars_read_back_by_ffmpeg_and_pysubs2_hold_exactly_the_cues_written(tmp_path):
    """Raw hostile text straight into the writers (no cleaning first): neither reader finds an
    injected cue, a lost cue or live markup. SRT cannot carry ASS overrides: they are dropped."""
    raw = [INJECTION, "{\\pos(0,0)\\fs200}styled", "00:00:01,000 --> 00:00:30,000", "plain \u062a\u0633\u062a"]
    events = _events(raw)
    srt = subtitles.write_srt(events, tmp_path / "x.srt")
    vtt = subtitles.write_vtt(events, tmp_path / "x.vtt")
    expected_spans = [(1000 + 2000 * i, 2500 + 2000 * i) for i in range(len(raw))]
    for path in (srt, vtt):
        for reader in (ffmpeg_cues, pysubs2_cues):
            cues = reader(path)
            assert [(s, e) for s, e, _ in cues] == expected_spans, (path.name, reader.__name__, cues)
    srt_texts = [t for _, _, t in ffmpeg_cues(srt)]
    assert srt_texts[1] == "styled" and srt_texts[2] == "00\u223600\u223601,000 → 00\u223600\u223630,000"
    assert "\\pos" not in srt.read_text(encoding="utf-8")


def test_clean_text_survives_every_sidecar_exactly(tmp_path):
    """Text as it leaves the translate stage (cleaned) is read back exactly from SRT, VTT and ASS."""
    texts = [clean_line(t) for t in (INJECTION, "{\\pos(0,0)\\fs200}Where were you?", "Tom & Jerry: 5 < 6",
                                      "Ends\u202e reversed?")]
    events = _events(texts)
    track = SubtitleTrack(language="en", events=events)
    market = load_market(ROOT / "configs", "us")
    ass = subtitles.write_ass(build_ass(track, market.config.subtitles, market.profile, None), tmp_path / "x.ass")
    srt = subtitles.write_srt(events, tmp_path / "x.srt")
    vtt = subtitles.write_vtt(events, tmp_path / "x.vtt")
    for path in (srt, vtt, ass):
        # pysubs2 does not decode WebVTT's character references (&amp;, &lt;): the file is right
        unescape = html.unescape if path is vtt else str
        assert [unescape(t) for _, _, t in pysubs2_cues(path)] == texts, path.name
        assert [t for _, _, t in ffmpeg_cues(path) if t] == texts, path.name
    assert not any(ch in (tmp_path / "x.ass").read_text(encoding="utf-8") for ch in RLO_CHARS)


def test_backend_injection_through_the_pipeline(tmp_path, clip, configs, monkeypatch):
    """The llm backend (fake server) answers one cue with an injection attempt and the other
    with 5,000 characters: the run finishes, the sidecars hold the track's events exactly,
    no bidi override reaches the subtitles and QC flags the runaway line."""
    answers = {"你好，陆总。": INJECTION, "昨晚你去哪了？": "very long " * 500}

    def answer(messages, _n):
        asked = json.loads(messages[-1]["content"])
        return json.dumps({"lines": [{"id": ln["id"], "text": answers.get(ln["text"], "ok")}
                                     for ln in asked.get("lines", [])]})

    with fake_chat_server(answer) as (url, calls):
        monkeypatch.setenv("LOCPIPE_LLM_URL", url)
        monkeypatch.setenv("LOCPIPE_LLM_TIMEOUT", "10")
        started = time.perf_counter()
        report = run_episode(clip, settings_for(tmp_path, configs, [HOSTILE_MARKET]), resources=Resources())
        seconds = time.perf_counter() - started
    (unit,) = report.units
    assert (unit.status, unit.error) == ("ok", ""), unit.error
    assert calls and seconds < 60
    qc = json.loads(Path(unit.outputs["qc"]).read_text(encoding="utf-8"))
    checks = {c["name"]: c for c in qc["checks"]}
    assert checks["subtitle_violations"]["passed"] is False and "text limit" in json.dumps(qc)
    srt, vtt, ass = (Path(unit.outputs[k]) for k in ("srt", "vtt", "ass"))
    written = pysubs2_cues(srt)
    assert len(written) == len(ffmpeg_cues(srt)) == len(pysubs2_cues(vtt)) == len(pysubs2_cues(ass))
    assert [t for _, _, t in ffmpeg_cues(srt)] == [t for _, _, t in written]
    everything = srt.read_text(encoding="utf-8") + vtt.read_text(encoding="utf-8") + ass.read_text(encoding="utf-8")
    assert not any(ch in everything for ch in RLO_CHARS) and "{\\pos" not in everything
    assert all(end - start < 29_000 for start, end, _ in written)  # no 29-second injected cue


# --------------------------------------------------------------------------- 3. paths and names


def test_colon_name_run_from_its_folder(tmp_path, clip, configs, monkeypatch):
    series = tmp_path / "series"
    series.mkdir()
    os.link(clip, series / "ep:1.mp4")
    monkeypatch.chdir(series)
    assert [p.name for p in discover_episodes([Path(".")])] == ["ep:1.mp4"]
    assert media_input("ep:1.mp4") == str(series / "ep:1.mp4")
    run_ffmpeg(["-i", "ep:1.mp4", "-t", "0.1", "-f", "null", "-"])  # relative input made absolute
    assert probe(Path("ep:1.mp4")).path == str(series / "ep:1.mp4")
    # `locpipe run .` itself (in process, so the fake engines are reachable; no speaker model)
    build = options.build_settings
    monkeypatch.setattr(options, "build_settings", lambda **kw: dataclasses.replace(build(**kw), speakers=False))
    out = tmp_path / "out"
    assert main(["run", ".", "--out", str(out), "--markets", PLAIN_MARKET, "--asr", fb.ASR_NAME, "--no-ocr",
                 "--config-dir", str(configs), "--ledger", str(tmp_path / "ledger.sqlite")]) == 0
    (unit,) = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["units"]
    assert unit["status"] == "ok" and Path(unit["outputs"]["video"]) == out / PLAIN_MARKET / "ep:1.mp4"
    assert (out / PLAIN_MARKET / "ep:1.en.srt").is_file()


def test_long_chinese_name_and_names_kept_as_they_are(tmp_path, clip, configs):
    long_stem = "霸道总裁爱上我" * 11 + "第六集大结局"  # 77 + 6 = 83 characters, 249 bytes (+ ".mp4" = 253)
    assert len(long_stem) == 83 and len((long_stem + ".mp4").encode()) == 253
    series = tmp_path / "series"
    series.mkdir()
    names = [long_stem + ".mp4", "ep 02 'landscape'.mp4", "第 3 集 (final).mp4"]
    for name in names:
        os.link(clip, series / name)
    settings = settings_for(tmp_path, configs, [PLAIN_MARKET])
    reports = run_batch(discover_episodes([series]), settings)
    by_source = {Path(r.source).name: r for r in reports}
    for name in names:
        (unit,) = by_source[name].units
        assert unit.status == "ok", (name, unit.error)
        for kind, out in unit.outputs.items():
            assert len(Path(out).name.encode()) <= 255, kind
    assert Path(by_source["ep 02 'landscape'.mp4"].units[0].outputs["video"]).name == "ep 02 'landscape'.mp4"
    assert Path(by_source["第 3 集 (final).mp4"].units[0].outputs["srt"]).name == "第 3 集 (final).en.srt"
    long_export = by_source[long_stem + ".mp4"].episode
    assert long_export.startswith(long_stem[:60]) and re.search(r"~[0-9a-f]{8}$", long_export)
    assert len(long_export.encode()) <= MAX_EXPORT_STEM_BYTES
    assert all(len(p.name.encode()) <= 80 for p in (tmp_path / "work" / "episodes").iterdir())
    from locpipe.core.manifest import write_manifest

    manifest = json.loads(write_manifest(settings.out_dir, reports, settings, time.perf_counter())
                          .read_text(encoding="utf-8"))
    mapping = {e["source_name"]: e["episode"] for e in manifest["episodes"]}
    assert mapping[long_stem + ".mp4"] == long_export and mapping["ep 02 'landscape'.mp4"] == "ep 02 'landscape'"


def test_only_what_a_filesystem_cannot_hold_is_replaced():
    assert file_stem("a/b\x00c\x07d\u202ee") == "a_b_c_d\u202ee"
    assert file_stem('a<b>c:d"e\\f|g?h*i. ', windows=True) == "a_b_c_d_e_f_g_h_i"
    assert file_stem('a<b>:"?*') == 'a<b>:"?*'
    assert file_stem("..") == "episode" and file_stem("") == "episode"
    assert episode_name(Path("/x/ep 02 'landscape'.mp4")) == "ep 02 'landscape'"
    assert work_folder_name("第" * 200, "ab" * 32).endswith("-" + "ab" * 6)
    assert len(work_folder_name("第" * 200, "ab" * 32).encode()) <= 64


def test_colliding_names_still_fail_clearly(tmp_path):
    a, b = tmp_path / "x" / "ep:1.mp4", tmp_path / "y" / "ep_1.mp4"
    check_unique_names([a, b])  # distinct on Linux
    with pytest.raises(ConfigError, match="exports as 'ep_1'"):
        check_unique_names([a, b], windows=True)


# --------------------------------------------------------------------------- 4. truncated or corrupt input


def test_truncated_file_is_refused_at_ingest_naming_it(tmp_path, clip, configs):
    cut = tmp_path / "cut.mp4"
    data = clip.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"truncated or corrupt: decodes to 1\.\d s of the 3\.0 s its header declares"):
        probe(cut)
    asr_calls = fb.CALLS["asr"]
    report = run_episode(cut, settings_for(tmp_path, configs, [PLAIN_MARKET]), resources=Resources())
    (unit,) = report.units
    assert unit.failed_stage == "ingest" and str(cut) in unit.error and "truncated or corrupt" in unit.error
    assert fb.CALLS["asr"] == asr_calls  # no model ran


def test_corrupt_tail_is_refused(tmp_path, clip):
    data = bytearray(clip.read_bytes())
    for k in range(int(len(data) * 0.75), len(data)):
        data[k] = (k * 7919) % 251
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError, match="truncated or corrupt") as err:
        probe(bad)
    assert str(bad) in str(err.value)


def test_truncated_audio_is_recognised(tmp_path):
    import av

    full = tmp_path / "tone.m4a"
    run_ffmpeg(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=4", "-c:a", "aac",
                "-movflags", "+faststart", str(full)])
    cut = tmp_path / "tone-cut.m4a"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 2 // 5])
    with av.open(str(cut)) as container, pytest.raises(InputError, match=r"decodes to 1\.\d s of the 4\.0 s .*audio"):
        check_complete(container, list(container.streams.audio), container.duration / 1e6, cut)


# --------------------------------------------------------------------------- 5. configs before any work


def test_unsafe_bible_fails_before_any_episode(tmp_path, clip, configs):
    series = tmp_path / "series"
    series.mkdir()
    os.link(clip, series / "ep01.mp4")
    (series / "bible.yaml").write_text('characters: !!python/object/apply:os.system ["echo pwned"]\n',
                                       encoding="utf-8")
    asr_calls = fb.CALLS["asr"]
    argv = ["run", str(series), "--out", str(tmp_path / "out"), "--markets", PLAIN_MARKET, "--asr", fb.ASR_NAME,
            "--no-ocr", "--config-dir", str(configs)]
    assert main(argv) == 2
    assert fb.CALLS["asr"] == asr_calls and not (tmp_path / "out" / ".locpipe-work" / "episodes").exists()
    (series / "bible.yaml").unlink()
    (series / ".locpipe").mkdir()
    (series / ".locpipe" / "voices.yaml").write_text("markets: [not, a, mapping]\n", encoding="utf-8")
    assert main(argv) == 2 and fb.CALLS["asr"] == asr_calls


def test_global_options_before_or_after_the_command():
    parser = build_parser()
    after = parser.parse_args(["run", "x", "--out", "o", "--markets", "us", "--config-dir", "C", "--log-level",
                               "DEBUG", "--log-format", "json"])
    before = parser.parse_args(["--config-dir", "C", "--log-level", "DEBUG", "run", "x", "--out", "o", "--markets",
                                "us"])
    assert (after.config_dir, after.log_level, after.log_format) == ("C", "DEBUG", "json")
    assert (before.config_dir, before.log_level, before.log_format) == ("C", "DEBUG", "text")
    assert parser.parse_args(["markets", "--config-dir", "D"]).config_dir == "D"
    assert parser.parse_args(["--config-dir", "C", "markets", "--config-dir", "D"]).config_dir == "D"


# --------------------------------------------------------------------------- 6. interrupts


#: ``locpipe`` with the fake engines, as a file: ``--jobs`` workers (spawned) import it too
RUNNER = """
import sys
import dataclasses
import fake_backends as fb
from locpipe.cli import options
REGISTERED = fb.registered()  # kept: a collected context manager would unregister the fakes
REGISTERED.__enter__()
# no speaker model either (seconds to load per process, and not what is tested here)
_build = options.build_settings
options.build_settings = lambda **kw: dataclasses.replace(_build(**kw), speakers=False)
if __name__ == "__main__":
    from locpipe.cli import main
    sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize(("jobs", "sig"), [(1, signal.SIGTERM), (2, signal.SIGINT)])
def test_interrupt_records_what_finished_and_a_rerun_resumes(tmp_path, clip, configs, jobs, sig):
    series = tmp_path / "series"
    series.mkdir()
    total = 2 + jobs  # one episode finished, at least one not started when the signal comes
    for n in range(1, total + 1):
        os.link(clip, series / f"ep{n:02d}.mp4")
    out = tmp_path / "out"
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER, encoding="utf-8")
    cmd = [sys.executable, str(runner), "run", str(series), "--out", str(out), "--markets", PLAIN_MARKET, "--asr",
           fb.ASR_NAME, "--no-ocr", "--config-dir", str(configs), "--ledger", str(tmp_path / "ledger.sqlite"),
           "--jobs", str(jobs), "--log-level", "WARNING"]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    # its own session: Ctrl-C is sent to the whole process group, as a terminal does
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    first_qc = out / PLAIN_MARKET / "ep01.qc.json"
    deadline = time.monotonic() + 120
    while not first_qc.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if jobs > 1:
        time.sleep(1.0)  # the export is published by the worker; its report reaches the parent just after
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "Traceback" not in stderr + stdout
    match = re.search(r"interrupted: (\d+) units finished, (\d+) not started", stderr)
    assert match, stderr[-2000:]
    finished, not_started = map(int, match.groups())
    assert finished >= 1 and not_started >= 1 and finished + not_started <= total
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert len(manifest["units"]) == finished and all(u["status"] == "ok" for u in manifest["units"])

    if jobs > 1:
        return  # resuming is the same with workers; one rerun (below) keeps the suite short
    rerun = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    ep01 = [u for u in manifest["units"] if u["episode"] == "ep01"][0]
    assert ep01["stages"] and all(s["cached"] for s in ep01["stages"]), ep01["stages"]


def test_children_die_with_their_parent(tmp_path):
    """A parent killed outright (SIGKILL: no handler runs) takes its ffmpeg child with it."""
    script = (
        "import sys, threading\n"
        "from locpipe.children import run_child\n"
        "from locpipe.media.ffmpeg import ffmpeg_exe\n"
        "run_child([ffmpeg_exe(), '-v', 'error', '-re', '-f', 'lavfi', '-i', 'anullsrc', '-f', 'null', '-'])\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    child = None
    deadline = time.monotonic() + 30
    while child is None and time.monotonic() < deadline:
        found = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        child = int(found[0]) if found else None
        time.sleep(0.05)
    assert child is not None, "ffmpeg child did not start"
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running (a zombie, dead but not yet reaped by init, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return not re.search(r"^State:\s+[ZX]", status, re.M)
