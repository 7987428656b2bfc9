"""End to end: the CLI as the Docker entrypoint runs it, on the bundled sample and on bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pysubs2
import pytest
from conftest import ROOT, cut_sample, make_clip

from locpipe.config import DEFAULT_CONFIG_DIR, load_market
from locpipe.media.ass import SUBTITLE_STYLE
from locpipe.media.ffmpeg import measure_loudness
from locpipe.media.probe import probe
from locpipe.stages.translate import CJK_RE

pytestmark = pytest.mark.slow


def entrypoint() -> list[str]:
    """The Dockerfile's ENTRYPOINT, resolved to this environment's console script."""
    text = (ROOT / "Dockerfile").read_text()
    match = re.search(r'^ENTRYPOINT \["([^"]+)"\]', text, re.M)
    assert match, "Dockerfile has no exec-form ENTRYPOINT"
    exe = Path(sys.executable).with_name(match.group(1))
    assert exe.exists(), f"{exe} not installed: the Dockerfile's entrypoint would not resolve"
    return [str(exe)]


def locpipe(*args: str, check_code: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([*entrypoint(), "--log-level", "INFO", *args], capture_output=True, text=True)
    if check_code is not None:
        assert proc.returncode == check_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_dockerfile_installs_with_the_shared_setup_script():
    text = (ROOT / "Dockerfile").read_text()
    assert "bash scripts/setup.sh" in text
    assert "docker run" in (ROOT / "README.md").read_text()
    assert locpipe("--version").stdout.startswith("locpipe ")


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory, sample):
    series = tmp_path_factory.mktemp("series")
    shutil.copy(sample, series / "ep001.mp4")
    out = tmp_path_factory.mktemp("out")
    proc = locpipe("run", str(series), "--out", str(out), "--markets", "us,us-social", "--distributor", "acme")
    return series, out, proc


def _units(out: Path) -> list[dict]:
    return json.loads((out / "manifest.json").read_text())["units"]


@pytest.mark.parametrize("market", ["us", "us-social"])
def test_sample_exports(sample_run, sample, market):
    _series, out, _proc = sample_run
    video = out / market / "ep001.mp4"
    srt = out / market / "ep001.en.srt"
    assert video.exists() and srt.exists() and (out / market / "ep001.en.vtt").exists()
    ass = pysubs2.load(str(out / market / "ep001.en.ass"))  # styled sidecar: subtitles only, no watermark
    blocks = srt.read_text("utf-8").strip().split("\n\n")
    assert [e.plaintext for e in ass.events] == [b.split("\n", 2)[2] for b in blocks]
    assert set(ass.styles) == {SUBTITLE_STYLE} and ass.info["PlayResY"] == "1920"
    info, source = probe(video), probe(sample)
    assert (info.width, info.height) == (1080, 1920)
    assert abs(info.duration - source.duration) <= 0.1
    assert (info.video_codec, info.audio_codec, info.sample_rate) == ("h264", "aac", 48000)
    text = srt.read_text(encoding="utf-8")
    cues = [b for b in text.strip().split("\n\n") if b.strip()]
    assert len(cues) >= 8
    assert not CJK_RE.search(text)
    target = load_market(DEFAULT_CONFIG_DIR, market).config.loudness
    loud = measure_loudness(video)
    assert abs(loud.integrated - target.integrated) <= 1.0
    assert loud.true_peak <= target.true_peak + 0.5
    qc = json.loads((out / market / "ep001.qc.json").read_text())
    assert {c["name"] for c in qc["checks"]} >= {"resolution", "duration_match", "loudness", "cjk_leaks"}
    checks = {c["name"]: c for c in qc["checks"]}
    if market == "us":  # the app profile carries the forensic mark: QC traced the export itself
        assert checks["forensic_watermark"]["passed"], checks["forensic_watermark"]
    else:  # social uploads are our own public copies: no forensic mark
        assert "forensic_watermark" not in checks


def test_manifest_records_units_backends_and_timings(sample_run):
    _series, out, _ = sample_run
    manifest = json.loads((out / "manifest.json").read_text())
    units = {u["market"]: u for u in manifest["units"]}
    assert set(units) == {"us", "us-social"}
    assert all(u["status"] == "ok" for u in units.values())
    from locpipe.backends.tts.kokoro_voices import installed_packs

    # Kokoro's native English voices where set-up had npm, Piper's joe otherwise
    assert units["us"]["backends"]["synthesize"].startswith("kokoro" if installed_packs() else "piper")
    assert "translate" in units["us"]["backends"]
    stages = {s["stage"] for s in units["us"]["stages"]}
    assert stages >= {"translate", "segment", "synthesize", "mix", "render", "qc"}
    # one translation served both English markets
    assert any(s["stage"] == "translate" and s["cached"] for s in units["us-social"]["stages"])
    assert manifest["versions"]["faster-whisper"] != "missing"
    assert not list(out.rglob(".*.tmp"))


def test_rerun_of_unchanged_job_does_no_stage_work(sample_run):
    series, out, _ = sample_run
    locpipe("run", str(series), "--out", str(out), "--markets", "us,us-social", "--distributor", "acme")
    manifest = json.loads((out / "manifest.json").read_text())
    shared = manifest["episodes"][0]["shared_stages"]
    work = [s for u in manifest["units"] for s in u["stages"]] + shared
    assert work and all(s["cached"] for s in work), [s for s in work if not s["cached"]]


def test_style_change_rerenders_without_retranscribing(sample_run, tmp_path):
    series, out, _ = sample_run
    cfg = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, cfg)
    path = cfg / "markets" / "us-social.yaml"
    path.write_text(path.read_text().replace("size: 54", "size: 50"))
    locpipe("--config-dir", str(cfg), "run", str(series), "--out", str(out), "--markets", "us-social",
            "--distributor", "acme")
    manifest = json.loads((out / "manifest.json").read_text())
    unit = next(u for u in manifest["units"] if u["market"] == "us-social")
    cached = {s["stage"]: s["cached"] for s in unit["stages"]}
    assert cached["translate"] and cached["segment"] and cached["mix"]
    assert not cached["render"]
    assert all(s["cached"] for s in manifest["episodes"][0]["shared_stages"])


def test_many_distributors_share_one_encode_and_each_copy_traces_to_its_distributor(sample_run, tmp_path):
    """``--distributor a,b``: the market is encoded once as A/B segments; each copy is
    assembled, QC traces it back to its own distributor; adding a third later re-encodes
    only that distributor's window."""
    series, first_out, _ = sample_run
    out, work = tmp_path / "out", first_out / ".locpipe-work"
    locpipe("run", str(series), "--out", str(out), "--work", str(work), "--markets", "us",
            "--distributor", "ReelCo,DramaHub")
    units = {u["distributor"]: u for u in _units(out)}
    assert set(units) == {"ReelCo", "DramaHub"} and all(u["status"] == "ok" for u in units.values())
    for name, unit in units.items():
        assert unit["outputs"]["video"] == str(out / "us" / name / "ep001.mp4")
        qc = json.loads(Path(unit["outputs"]["qc"]).read_text())
        check = next(c for c in qc["checks"] if c["name"] == "forensic_watermark")
        assert check["passed"], check
        stages = {s["stage"]: s["cached"] for s in unit["stages"]}
        assert stages["translate"] and stages["mix"] and "render_ab" in stages and not stages["render"]
    traced = json.loads(locpipe("trace", units["DramaHub"]["outputs"]["video"]).stdout)  # the house ledger
    assert traced["distributor_determined"] and traced["ledger"]["distributor"] == "DramaHub"

    locpipe("run", str(series), "--out", str(out), "--work", str(work), "--markets", "us",
            "--distributor", "ReelCo,DramaHub,ShortMax")
    units = {u["distributor"]: u for u in _units(out)}
    stages = {name: {s["stage"]: s["cached"] for s in u["stages"]} for name, u in units.items()}
    assert stages["ShortMax"]["render_ab"] and not stages["ShortMax"]["render"]  # the base is reused
    assert stages["ReelCo"]["render"] and stages["DramaHub"]["qc"]  # the earlier copies are untouched
    assert (out / "us" / "ShortMax" / "ep001.mp4").is_file()


def test_bad_inputs_are_reported_and_the_good_episode_still_exported(tmp_path):
    series = tmp_path / "series"
    series.mkdir()
    cut_sample(series / "ep002.mp4", 0.5, 9.0)
    (series / "ep003.mp4").write_bytes(b"")
    (series / "ep004.mp4").write_text("producer notes: re-cut ep004 next week\n" * 10)
    data = (series / "ep002.mp4").read_bytes()
    (series / "ep005.mp4").write_bytes(data[: len(data) // 2][:4096] + bytes(50_000))
    make_clip(series / "ep006.mp4", audio=False)
    (series / "ep007.mp4.part").write_bytes(b"still copying")
    out = tmp_path / "out"
    # br with online backends only: no key and no network here, so that market must fail alone
    # (the bundled chain starts with the local model, and CI also installs Debian's apertium:
    # both would translate it offline)
    cfg = tmp_path / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, cfg)
    br = cfg / "markets" / "br.yaml"
    br.write_text(re.sub(r"backends: \[.*\]", "backends: [deepl, google]", br.read_text()))
    assert "apertium" not in br.read_text() and "local-llm" not in br.read_text()
    # two worker processes: failures in one never stop the other
    proc = locpipe("--config-dir", str(cfg), "run", str(series), "--out", str(out), "--markets", "us-social,br",
                   "--jobs", "2", check_code=3)
    units = {(u["episode"], u["market"]): u for u in _units(out)}
    assert units[("ep002", "us-social")]["status"] == "ok"
    assert (out / "us-social" / "ep002.mp4").exists()
    reasons = {ep: units[(ep, "us-social")]["error"] for ep in ("ep003", "ep004", "ep005", "ep006")}
    assert "empty (0 bytes)" in reasons["ep003"]
    assert "text file" in reasons["ep004"]
    assert "corrupt or truncated" in reasons["ep005"]
    assert "no audio stream" in reasons["ep006"]
    for ep, reason in reasons.items():
        assert f"{ep}.mp4" in reason
        assert ep in proc.stdout  # the summary table names each failure
    assert all(u["failed_stage"] == "ingest" for (ep, _m), u in units.items() if ep != "ep002")
    # Portuguese has no offline backend here: that market fails alone, clearly
    br = units[("ep002", "br")]
    assert br["status"] == "failed" and br["failed_stage"] == "translate"
    assert "no translation backend available for zh->pt-BR" in br["error"]
    assert "DEEPL_API_KEY" in br["error"]
    assert ("ep007", "us-social") not in units  # a file still being copied is not an episode
    # nothing half-written is left behind: only finished exports, the manifest and the QC report
    leftovers = [p.relative_to(out).as_posix() for p in out.rglob("*")
                 if p.is_file() and ".locpipe-work" not in p.parts]
    assert sorted(leftovers) == sorted([
        "us-social/ep002.mp4", "us-social/ep002.en.srt", "us-social/ep002.en.vtt", "us-social/ep002.en.ass",
        "us-social/ep002.qc.json", "manifest.json",
        "qc/index.html", "qc/report.json", "qc/us-social/ep002.jpg"])


def test_configuration_error_exits_2_before_any_work(tmp_path):
    proc = locpipe("run", str(ROOT / "samples"), "--out", str(tmp_path / "o"), "--markets", "us,atlantis",
                   check_code=2)
    assert "atlantis" in proc.stderr
    assert not (tmp_path / "o").exists()


def test_qc_report_is_written_with_working_links_and_pictures(sample_run):
    from html.parser import HTMLParser

    _series, out, _ = sample_run
    index = out / "qc" / "index.html"
    assert index.exists() and (out / "qc" / "report.json").exists()

    class Links(HTMLParser):
        def __init__(self):
            super().__init__()
            self.targets: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.targets += [v for k, v in attrs if k in ("href", "src") and v]

    parser = Links()
    parser.feed(index.read_text(encoding="utf-8"))
    assert len(parser.targets) >= 2 * 4 + 2  # per export: qc, srt, video, vtt (+ contact sheet)
    for target in parser.targets:
        assert (index.parent / target).resolve().exists(), target
    sheets = list((out / "qc").rglob("*.jpg"))
    assert len(sheets) == 2 and all(p.stat().st_size > 10_000 for p in sheets)
    report = json.loads((out / "qc" / "report.json").read_text())
    assert {r["market"] for r in report} == {"us", "us-social"}


def test_qc_report_renders_in_a_headless_browser(sample_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        pytest.skip("Debian chromium not installed (.ci/run installs it)")
    _series, out, _ = sample_run
    shot = tmp_path / "report.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1000",
                    f"--screenshot={shot}", (out / "qc" / "index.html").as_uri()],
                   check=True, capture_output=True, timeout=120)
    import av

    with av.open(str(shot)) as img:
        frame = next(img.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape[:2] == (1000, 1400)
    # the page drew pictures, not just a blank page: many distinct colours from the contact sheets
    assert len({tuple(px) for px in frame[::7, ::7].reshape(-1, 3)}) > 500


def test_json_log_lines_carry_episode_market_and_stage(tmp_path):
    """Farm collectors parse --log-format json: one object per line with the unit's context."""
    (tmp_path / "ep009.mp4").write_bytes(b"")
    proc = subprocess.run([sys.executable, "-m", "locpipe", "--log-format", "json", "run", str(tmp_path),
                           "--out", str(tmp_path / "out"), "--markets", "us"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    records = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    assert records and all({"time", "level", "message", "episode", "market", "stage"} <= set(r) for r in records)
    failure = next(r for r in records if r["level"] == "ERROR")
    assert (failure["episode"], failure["stage"]) == ("ep009", "ingest")
    assert failure["message"].count("ep009.mp4") == 1 and "empty (0 bytes)" in failure["message"]
