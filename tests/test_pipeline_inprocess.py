"""The whole pipeline in process, in seconds: fake ASR/MT/TTS engines, everything else real.

The fakes (``fake_backends``) are registered in the real registries and reached the way
production reaches engines: ``RunSettings.asr_backend`` and the market YAMLs name them,
``Resources`` creates them. Ingest, the stage cache, segmentation, the dub's placement, the
mix, the shared render, QC and publication all run for real on a 4 s clip made with
ffmpeg, rendered at 360x640 so an episode takes a few seconds.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import fake_backends as fb
import numpy as np
import pysubs2
import pytest
import yaml
from conftest import make_clip

from locpipe.artifacts import QCReport
from locpipe.config import load_market
from locpipe.core.manifest import write_manifest
from locpipe.core.pipeline import run_episode
from locpipe.core.reports import EpisodeReport, UnitReport
from locpipe.core.resources import Resources
from locpipe.core.settings import RunSettings
from locpipe.media.ffmpeg import ffmpeg_exe
from locpipe.media.probe import probe

SECONDS = 4.0
W, H = 360, 640
US, MX, FR = "us-fake", "mx-fake", "fr-fake"
EXPORT_KINDS = {"video", "srt", "vtt", "ass", "qc"}
DUB_STAGES = ["translate", "segment", "synthesize", "mix", "render", "qc"]
SUB_STAGES = ["translate", "segment", "mix", "render", "qc"]

PROFILE, SUBTITLES = fb.TINY_PROFILE, fb.TINY_SUBTITLES
MARKETS = {
    US: {"name": "US (fake dub)", "language": "en", "render_profile": "tiny",
         "dub": {"enabled": True, "voice": f"{fb.TTS_NAME}:{fb.VOICE}", "background": "duck"},
         "subtitles": SUBTITLES, "watermark": {"visible": True, "size": 16},
         "translation": {"backends": [fb.MT_NAME]}},
    MX: {"name": "MX (fake subtitles)", "language": "es", "render_profile": "tiny",
         "dub": {"enabled": False, "background": "duck"}, "subtitles": {**SUBTITLES, "size": 22},
         "watermark": {"visible": True, "size": 16}, "translation": {"backends": [fb.MT_NAME]}},
    FR: {"name": "FR (translation fails)", "language": "fr", "render_profile": "tiny",
         "dub": {"enabled": False, "background": "duck"}, "subtitles": SUBTITLES,
         "translation": {"backends": [fb.MT_OFFLINE]}},
}


# --------------------------------------------------------------------------- helpers


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_configs(root: Path, overrides: dict[str, dict] | None = None) -> Path:
    """configs/markets/*.yaml and configs/profiles/tiny.yaml under ``root`` (rewritten in place)."""
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "markets").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "tiny.yaml").write_text(yaml.safe_dump(PROFILE), encoding="utf-8")
    for code, cfg in MARKETS.items():
        cfg = _merge(cfg, (overrides or {}).get(code, {}))
        (root / "markets" / f"{code}.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return root


def make_settings(base: Path, codes: list[str], config_dir: Path, **kw) -> RunSettings:
    kw = {"asr_backend": fb.ASR_NAME, "ocr": False, "speakers": False, **kw}
    return RunSettings(out_dir=base / "out", work_dir=base / "work",
                       markets=tuple(load_market(config_dir, c) for c in codes), config_dir=config_dir,
                       ledger_path=base / "ledger.sqlite", **kw)


class _Warnings(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@dataclass
class Run:
    report: EpisodeReport
    #: engine calls during this run (fake_backends.CALLS delta)
    calls: Counter
    #: engine instances made during this run (fake_backends.MADE delta)
    made: Counter
    events: list[tuple] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def unit(self, code: str) -> UnitReport:
        (unit,) = [u for u in self.report.units if u.market == code]
        return unit


def run(path: Path, settings: RunSettings, resources: Resources) -> Run:
    calls, made, events = Counter(fb.CALLS), Counter(fb.MADE), []
    handler = _Warnings()
    logger = logging.getLogger("locpipe")
    logger.addHandler(handler)
    try:
        report = run_episode(path, settings, progress=lambda *e: events.append(e), resources=resources)
    finally:
        logger.removeHandler(handler)
    return Run(report, Counter(fb.CALLS) - calls, Counter(fb.MADE) - made, events, handler.messages)


def stages(unit_or_rows) -> dict[str, bool]:
    """stage -> cached, from a unit's records or shared_stages (each stage at most once)."""
    rows = unit_or_rows.stages if isinstance(unit_or_rows, UnitReport) else unit_or_rows
    names = [r["stage"] for r in rows]
    assert len(names) == len(set(names)), f"a stage recorded twice: {names}"
    return {r["stage"]: r["cached"] for r in rows}


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def subtitle_text(path: str | Path) -> str:
    return " ".join(" ".join(ev.plaintext.split()) for ev in pysubs2.load(str(path), encoding="utf-8"))


def tone_level(video: str | Path, hz: float, start: float, end: float) -> float:
    """Magnitude of ``hz`` in the export's audio between ``start`` and ``end`` (relative to the peak bin)."""
    rate = 16000
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(video), "-vn", "-ac", "1", "-ar", str(rate),
                          "-f", "f32le", "-"], check=True, capture_output=True).stdout
    audio = np.frombuffer(raw, dtype="<f4")[int(start * rate):int(end * rate)]
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    freqs = np.fft.rfftfreq(audio.size, 1 / rate)
    band = (freqs > hz - 15) & (freqs < hz + 15)
    return float(spectrum[band].max() / spectrum.max())


def assert_ok(r: Run, *codes: str) -> None:
    for code in codes:
        u = r.unit(code)
        assert (u.status, u.failed_stage, u.error) == ("ok", "", ""), f"{code}: {u.status} {u.failed_stage} {u.error}"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module", autouse=True)
def fakes():
    with fb.registered():
        yield


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("series")
    bad = d / "broken.mp4"
    bad.write_text("this is a text file, not a video\n", encoding="utf-8")
    return {"ep1": make_clip(d / "ep01.mp4", seconds=SECONDS), "ep2": make_clip(d / "ep02.mp4", seconds=3.0),
            "bad": bad}


@pytest.fixture(scope="module")
def first(tmp_path_factory, media, fakes):
    """One episode, the dubbed and the subtitles-only market, from an empty work dir."""
    base = tmp_path_factory.mktemp("first")
    settings = make_settings(base, [US, MX], write_configs(base / "configs"))
    resources = Resources()
    asr_inputs = len(fb.ASR_INPUTS)
    r = run(media["ep1"], settings, resources)
    return {"run": r, "settings": settings, "resources": resources, "base": base,
            "asr_inputs": fb.ASR_INPUTS[asr_inputs:], "created": Counter(resources.created),
            "hashes": {u.market: {k: sha(p) for k, p in u.outputs.items()} for u in r.report.units}}


# --------------------------------------------------------------------------- 1. one episode, two markets


def test_one_episode_two_markets_exports_everything(first):
    r, settings = first["run"], first["settings"]
    assert_ok(r, US, MX)
    assert [u.market for u in r.report.units] == [US, MX]
    expected_text = {US: ["Hello, Mr Lu.", "Where were you last night?"],
                     MX: ["Hola, señor Lu.", "¿Dónde estabas anoche?"]}
    for code, lang in ((US, "en"), (MX, "es")):
        u = r.unit(code)
        folder = settings.out_dir / code
        assert set(u.outputs) == EXPORT_KINDS
        assert {Path(p).parent for p in u.outputs.values()} == {folder}
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            ["ep01.mp4", f"ep01.{lang}.srt", f"ep01.{lang}.vtt", f"ep01.{lang}.ass", "ep01.qc.json"])
        for p in u.outputs.values():
            assert Path(p).stat().st_size > 0, p
        # the real render: the profile's frame, the source's length, h264/aac
        info = probe(Path(u.outputs["video"]))
        assert (info.width, info.height) == (W, H)
        assert info.duration == pytest.approx(SECONDS, abs=0.15)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")
        # subtitles carry the fake translation, in every format
        for kind in ("srt", "vtt", "ass"):
            text = subtitle_text(u.outputs[kind])
            for line in expected_text[code]:
                assert line in text, f"{code} {kind}: {line!r} not in {text!r}"
            assert not any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{code} {kind}: Chinese left in {text!r}"
        srt = pysubs2.load(u.outputs["srt"], encoding="utf-8")
        assert srt[0].start == pytest.approx(300, abs=120) and srt[-1].end <= SECONDS * 1000 + 1
        qc = QCReport.model_validate_json(Path(u.outputs["qc"]).read_text(encoding="utf-8"))
        assert (qc.episode, qc.market) == ("ep01", code)
        checks = {c.name: c for c in qc.checks}
        for name in ("resolution", "duration_match", "codecs", "cjk_leaks", "untranslated_lines"):
            assert checks[name].passed, f"{code} QC {name}: {checks[name]}"
        assert u.qc_passed == qc.passed
        assert u.backends["translate"] == f"{fb.MT_NAME} 1.0"
    # the dub: the fake voice spoke both lines, each fits its slot
    us_qc = {c.name: c for c in QCReport.model_validate_json(
        Path(r.unit(US).outputs["qc"]).read_text(encoding="utf-8")).checks}
    assert us_qc["dub_fit"].passed and us_qc["dub_fit"].value == 1.0 and fb.VOICE in us_qc["dub_fit"].detail
    assert r.unit(US).backends["synthesize"].startswith(f"{fb.TTS_NAME} ")
    assert "synthesize" not in r.unit(MX).backends


def test_dub_is_mixed_into_the_dubbed_export_only(first):
    """The fake voice's 660 Hz tone is in the US export while the first line is spoken, not in MX's."""
    r = first["run"]
    spoken = (0.35, 0.35 + fb.FakeTTS.seconds_for("Hello, Mr Lu.") - 0.1)
    assert tone_level(r.unit(US).outputs["video"], 660, *spoken) > 0.3
    assert tone_level(r.unit(MX).outputs["video"], 660, *spoken) < 0.05
    # the ducked original (330 Hz) is still under the dub
    assert tone_level(r.unit(US).outputs["video"], 330, *spoken) > 0.01


def test_stage_records_and_one_shared_transcription(first):
    r = first["run"]
    # the one ffmpeg run of both markets' exports is on record with its time (their render stages adopt it)
    assert [row["stage"] for row in r.report.shared_stages] == ["ingest", "transcribe", "render_shared"]
    assert stages(r.report.shared_stages) == {"ingest": False, "transcribe": False, "render_shared": False}
    shared_run = r.report.shared_stages[-1]
    assert shared_run["key"] == f"{US}+{MX}" and shared_run["seconds"] > 0
    assert [row["stage"] for row in r.unit(US).stages] == DUB_STAGES
    assert [row["stage"] for row in r.unit(MX).stages] == SUB_STAGES
    for u in r.report.units:
        assert not any(row["cached"] for row in u.stages), u.stages
        assert all(len(row["key"]) == 20 and row["seconds"] >= 0 for row in u.stages)
        assert u.seconds > 0 and u.export_id and u.config_hash
    # one recognition for both markets, on the real 16 kHz mono audio of the clip
    assert r.calls["asr"] == 1
    assert [(rate, ch) for _, rate, ch, _ in first["asr_inputs"]] == [(16000, 1)]
    assert first["asr_inputs"][0][3] == pytest.approx(SECONDS, abs=0.1)
    assert r.calls["mt:en"] == 1 and r.calls["mt:es"] == 1
    assert r.calls["tts"] == len(fb.LINES)
    # the markets rendered in one shared run (no fallback to one render each)
    assert not [m for m in r.warnings if "shared render" in m], r.warnings
    assert first["created"] == Counter({f"asr:{fb.ASR_NAME}": 1, f"mt:{fb.MT_NAME}": 1, f"tts:{fb.TTS_NAME}": 1})
    # progress events: every stage started and finished, nothing failed
    done = {(m, s) for _, m, s, status in r.events if status == "done"}
    assert {("", "ingest"), ("", "transcribe")} <= done
    assert {(US, s) for s in DUB_STAGES + ["export"]} <= done and {(MX, s) for s in SUB_STAGES + ["export"]} <= done
    assert not [e for e in r.events if e[3] == "failed"]


def test_report_merges_into_the_manifest(first, tmp_path):
    r, settings = first["run"], first["settings"]
    path = write_manifest(tmp_path, [r.report], settings, started=0.0)
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert [(u["market"], u["status"]) for u in manifest["units"]] == [(MX, "ok"), (US, "ok")]
    (episode,) = manifest["episodes"]
    assert [s["stage"] for s in episode["shared_stages"]] == ["ingest", "transcribe", "render_shared"]
    assert manifest["last_run"]["asr"]["backend"] == fb.ASR_NAME


# --------------------------------------------------------------------------- 2. rerun: all cached


def test_rerun_with_same_settings_is_all_cached(first):
    r1, settings, resources = first["run"], first["settings"], first["resources"]
    r2 = run(Path(r1.report.source), settings, resources)
    assert_ok(r2, US, MX)
    assert stages(r2.report.shared_stages) == {"ingest": True, "transcribe": True}
    assert stages(r2.unit(US)) == dict.fromkeys(DUB_STAGES, True)
    assert stages(r2.unit(MX)) == dict.fromkeys(SUB_STAGES, True)
    # the same keys as the first run, and no engine called or created again
    for code in (US, MX):
        assert [s["key"] for s in r2.unit(code).stages] == [s["key"] for s in r1.unit(code).stages]
        assert {k: sha(p) for k, p in r2.unit(code).outputs.items()} == first["hashes"][code]
    assert r2.calls == Counter() and r2.made == Counter()
    assert resources.created == first["created"]
    assert {status for *_, status in r2.events} <= {"start", "cached", "done"}


# --------------------------------------------------------------------------- 3. a style change


def test_subtitle_style_change_rerenders_only_that_market(tmp_path, media):
    config_dir = write_configs(tmp_path / "configs")
    settings = make_settings(tmp_path, [US, MX], config_dir)
    resources = Resources()
    r1 = run(media["ep1"], settings, resources)
    assert_ok(r1, US, MX)
    before = {u.market: {k: sha(p) for k, p in u.outputs.items()} for u in r1.report.units}

    write_configs(config_dir, {US: {"subtitles": {"size": 30}}})
    changed = replace(settings, markets=tuple(load_market(config_dir, c) for c in (US, MX)))
    r2 = run(media["ep1"], changed, resources)
    assert_ok(r2, US, MX)
    assert stages(r2.report.shared_stages) == {"ingest": True, "transcribe": True}
    assert stages(r2.unit(US)) == {"translate": True, "segment": True, "synthesize": True, "mix": True,
                                   "render": False, "qc": False}
    assert stages(r2.unit(MX)) == dict.fromkeys(SUB_STAGES, True)
    assert r2.calls == Counter()
    # the new style reached the export: ASS style size, burned video, while MX is untouched
    ass = pysubs2.load(r2.unit(US).outputs["ass"], encoding="utf-8")
    assert {round(s.fontsize) for s in ass.styles.values()} & {30}, {k: s.fontsize for k, s in ass.styles.items()}
    after = {u.market: {k: sha(p) for k, p in u.outputs.items()} for u in r2.report.units}
    assert after[US]["video"] != before[US]["video"]
    assert after[US]["ass"] != before[US]["ass"]
    assert after[MX] == before[MX]


# --------------------------------------------------------------------------- 4. failures stay in their unit


@pytest.mark.parametrize(("backend", "reason"), [(fb.MT_OFFLINE, "service offline (fake)"),
                                                 (fb.MT_BROKEN, "quota exhausted (fake)")])
def test_translation_failure_fails_only_its_market(tmp_path, media, backend, reason):
    config_dir = write_configs(tmp_path / "configs", {FR: {"translation": {"backends": [backend]}}})
    settings = make_settings(tmp_path, [US, FR, MX], config_dir)
    r = run(media["ep1"], settings, Resources())
    fr = r.unit(FR)
    assert (fr.status, fr.failed_stage) == ("failed", "translate")
    assert reason in fr.error and backend in fr.error, fr.error
    assert fr.outputs == {} and not (settings.out_dir / FR).exists()
    assert "translate" not in stages(fr) and "render" not in stages(fr)
    assert_ok(r, US, MX)
    for code in (US, MX):
        assert all(Path(p).is_file() for p in r.unit(code).outputs.values())
    assert (r.report.units[0].market, r.report.units[1].market, r.report.units[2].market) == (US, FR, MX)
    assert (r.events.count(("ep01", FR, "translate", "failed"))) == 1
    assert r.calls["asr"] == 1


def test_a_backend_failing_on_the_episode_hands_over_to_the_next_in_the_chain(tmp_path, media):
    """The local model timing out or never validating raises BackendUnavailable inside the stage:
    the market's next backend translates, and the manifest names what failed first."""
    config_dir = write_configs(tmp_path / "configs", {FR: {"translation": {"backends": [fb.MT_BROKEN, fb.MT_NAME]}}})
    settings = make_settings(tmp_path, [FR], config_dir)
    r = run(media["ep1"], settings, Resources())
    assert_ok(r, FR)
    fr = r.unit(FR)
    assert fr.backends["translate"] == f"{fb.MT_NAME} 1.0"
    assert len(fr.fallbacks) == 1 and "quota exhausted (fake)" in fr.fallbacks[0], fr.fallbacks
    assert fr.data_policy == "any" and fr.data_note == ""


def test_local_only_market_skips_remote_backends_and_records_it(tmp_path, media, monkeypatch):
    from fakes import fake_translation_server

    config_dir = write_configs(tmp_path / "configs", {FR: {"data_policy": "local-only",
                                                           "translation": {"backends": ["google", fb.MT_NAME]}}})
    settings = make_settings(tmp_path, [FR], config_dir)
    with fake_translation_server({}) as (url, requests):
        monkeypatch.setenv("LOCPIPE_GOOGLE_URL", url + "/m")
        r = run(media["ep1"], settings, Resources())
    assert_ok(r, FR)
    fr = r.unit(FR)
    assert requests == []  # nothing was sent, not even a reachability probe's request
    assert fr.backends["translate"] == f"{fb.MT_NAME} 1.0" and fr.data_policy == "local-only"
    assert "skipped remote backend(s) google" in fr.data_note and "no text or audio left the machine" in fr.data_note


def test_unusable_episode_fails_every_market_at_ingest(tmp_path, media):
    config_dir = write_configs(tmp_path / "configs")
    settings = make_settings(tmp_path, [US, MX], config_dir)
    r = run(media["bad"], settings, Resources())
    assert [u.market for u in r.report.units] == [US, MX]
    for u in r.report.units:
        assert (u.status, u.failed_stage) == ("failed", "ingest")
        assert str(media["bad"]) in u.error, u.error
        assert u.outputs == {}
    assert r.report.shared_stages == []
    assert r.calls == Counter()
    assert not settings.out_dir.exists() or not any(settings.out_dir.rglob("*.mp4"))


# --------------------------------------------------------------------------- 5. engines once per process


def test_two_episodes_share_one_set_of_engines(tmp_path, media):
    settings = make_settings(tmp_path, [US, MX], write_configs(tmp_path / "configs"))
    resources = Resources()
    runs = [run(media[ep], settings, resources) for ep in ("ep1", "ep2")]
    for r in runs:
        assert_ok(r, US, MX)
        assert stages(r.report.shared_stages) == {"ingest": False, "transcribe": False, "render_shared": False}
    assert resources.created == Counter({f"asr:{fb.ASR_NAME}": 1, f"mt:{fb.MT_NAME}": 1, f"tts:{fb.TTS_NAME}": 1})
    assert runs[0].made == Counter({fb.ASR_NAME: 1, fb.MT_NAME: 1, fb.TTS_NAME: 1})
    assert runs[1].made == Counter()
    assert [r.calls["asr"] for r in runs] == [1, 1]
    assert runs[0].report.sha256 != runs[1].report.sha256
    assert sorted(p.name for p in (settings.out_dir / US).glob("*.mp4")) == ["ep01.mp4", "ep02.mp4"]
    assert probe(settings.out_dir / US / "ep02.mp4").duration == pytest.approx(3.0, abs=0.15)


# --------------------------------------------------------------------------- 6. stop before the render


def test_stop_before_render_stops_units_without_exports(tmp_path, media):
    settings = make_settings(tmp_path, [US, MX], write_configs(tmp_path / "configs"), stop_before="render")
    resources = Resources()
    r = run(media["ep1"], settings, resources)
    for code, expected in ((US, DUB_STAGES[:-2]), (MX, SUB_STAGES[:-2])):
        u = r.unit(code)
        assert (u.status, u.failed_stage, u.error, u.outputs) == ("stopped", "", "", {})
        assert [s["stage"] for s in u.stages] == expected
    assert not settings.out_dir.exists() or not any(p.is_file() for p in settings.out_dir.rglob("*"))
    assert not [e for e in r.events if e[2] in ("render", "qc", "export")]
    # the render node's run picks up where it stopped: everything before the render is cached
    r2 = run(media["ep1"], replace(settings, stop_before=None), resources)
    assert_ok(r2, US, MX)
    assert stages(r2.unit(US)) == {**dict.fromkeys(DUB_STAGES[:-2], True), "render": False, "qc": False}
    assert stages(r2.unit(MX)) == {**dict.fromkeys(SUB_STAGES[:-2], True), "render": False, "qc": False}
    assert r2.calls == Counter()


# --------------------------------------------------------------------------- shared stages only


def test_transcribe_episode_reuses_the_cached_transcription(first):
    from locpipe.core.pipeline import transcribe_episode

    before = Counter(fb.CALLS)
    transcript = transcribe_episode(Path(first["run"].report.source), first["settings"], first["resources"])
    assert Counter(fb.CALLS) - before == Counter()  # the run's transcribe stage is reused
    assert [c.text for c in transcript.cues] == [text for _, _, text in fb.LINES]
    assert [(c.start, c.end) for c in transcript.cues] == [(s, e) for s, e, _ in fb.LINES]
    assert all(c.words for c in transcript.cues)
    assert (transcript.backend, transcript.model) == (fb.ASR_NAME, "fake-asr 1.0")


# --------------------------------------------------------------------------- config edge: a small watermark


def test_watermark_size_below_16_that_the_config_allows_renders(tmp_path, media):
    """WatermarkPolicy.size accepts 8..120, and 'internal mx-fake ep01 <id>' at 14 px is ~200 px
    wide in a 320 px safe zone: the render must not fail with 'too long to fit'."""
    config_dir = write_configs(tmp_path / "configs", {MX: {"watermark": {"size": 14}}})
    settings = make_settings(tmp_path, [MX], config_dir)
    assert settings.markets[0].config.watermark.size == 14  # a valid config: it loads
    r = run(media["ep1"], settings, Resources())
    assert_ok(r, MX)
    assert Path(r.unit(MX).outputs["video"]).is_file()


@pytest.mark.parametrize(("asr", "reason"), [(fb.ASR_BROKEN, "decoder crashed (fake)"),
                                             (fb.ASR_MISSING, "model weights not installed (fake)")])
def test_asr_backend_failure_fails_every_market_with_the_reason(tmp_path, media, asr, reason):
    """An ASR engine that fails (in recognition, or already when it is created, as openai-whisper
    does without torch) is an episode failure: every unit failed at transcribe, nothing raised."""
    settings = make_settings(tmp_path, [US, MX], write_configs(tmp_path / "configs"), asr_backend=asr)
    r = run(media["ep1"], settings, Resources())
    assert [u.market for u in r.report.units] == [US, MX]
    for u in r.report.units:
        assert (u.status, u.failed_stage) == ("failed", "transcribe"), (u.status, u.failed_stage, u.error)
        assert reason in u.error, u.error
        assert u.outputs == {}
    assert not settings.out_dir.exists() or not any(settings.out_dir.rglob("*.mp4"))
