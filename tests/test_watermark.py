"""Forensic watermark: payload + ECC, ledger, then real ffmpeg round trips.

The media tests render a 12 s cut of the bundled sample through ``render_export`` at
540x960 (the mark is defined relative to the frame, so a smaller frame is nearly the same
test at a quarter of the cost; below that, CRF 35 starts to eat into the margin), attack
the export with ffmpeg, and trace every version. The full 1080x1920 attack suite is
benchmarks/watermark.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import cut_sample, ffmpeg

from locpipe.config import DEFAULT_CONFIG_DIR, Market, SafeZone, load_market
from locpipe.media.probe import probe
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.watermark.detect import R_THRESHOLD, trace
from locpipe.watermark.ecc import conv_encode, viterbi_decode
from locpipe.watermark.forensic import ForensicSpec, forensic_graph
from locpipe.watermark.keys import KEY_ENV, key_file_for, load_key
from locpipe.watermark.ledger import Ledger
from locpipe.watermark.payload import PAYLOAD_BITS, Payload, distributor_code, episode_code

ROOT = Path(__file__).resolve().parent.parent
CLIP_SECONDS = 12.0
W, H = 540, 960
REENC = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-an"]


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("LOCPIPE_LEDGER", raising=False)


# --------------------------------------------------------------------------- payload and ECC


def test_payload_bits_roundtrip_and_crc_rejects_noise():
    p = Payload(distributor_code("ReelCo"), episode_code("ep001"), 4242)
    bits = p.bits()
    assert bits.shape == (PAYLOAD_BITS,) and PAYLOAD_BITS - 8 >= 40
    assert Payload.from_bits(bits) == p and Payload.from_hex(p.hex) == p
    flipped = bits.copy()
    flipped[10] ^= 1
    assert Payload.from_bits(flipped) is None
    rng = np.random.default_rng(0)
    accepted = sum(Payload.from_bits(rng.integers(0, 2, PAYLOAD_BITS)) is not None for _ in range(2000))
    assert accepted < 25  # CRC-8: about 1 in 256 random words passes


def test_viterbi_corrects_bit_errors_and_noise():
    rng = np.random.default_rng(1)
    for trial in range(20):
        p = Payload(int(rng.integers(0, 1 << 16)), int(rng.integers(0, 1 << 12)), int(rng.integers(0, 1 << 16)))
        soft = 1.0 - 2.0 * conv_encode(p.bits())
        soft = soft + rng.normal(0, 0.6, soft.shape)  # ~5% raw sign errors
        # and 6 hard errors spread over the codeword, with full confidence
        idx = rng.choice(np.arange(0, len(soft), 19), 6, replace=False)
        soft[idx] = -np.sign(soft[idx]) * 1.5
        assert Payload.from_bits(viterbi_decode(soft)) == p, trial


# --------------------------------------------------------------------------- ledger and key


def test_ledger_issues_unique_serials_concurrently_and_looks_up(tmp_path):
    ledger = Ledger(tmp_path / "shared" / "ledger.sqlite")
    issued: list[Payload] = []

    def work(i: int) -> None:
        for j in range(5):
            issued.append(ledger.issue(distributor=f"dist{i}", market="us", episode="ep001", export_id=f"x{i}{j}",
                                       file=f"/out/us/ep001-{i}{j}.mp4"))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({p.serial for p in issued}) == 20
    p = issued[7]
    entry = ledger.lookup(p)
    assert entry is not None and entry.payload == p and entry.market == "us" and entry.episode == "ep001"
    assert entry.distributor_code == distributor_code(entry.distributor) and entry.file.endswith(".mp4")
    assert ledger.lookup(Payload(1, 2, 60000)) is None
    ledger.withdraw(p)
    assert ledger.lookup(p) is None and len(ledger.entries()) == 19


def _issue_and_die(ledger: Path, *exports: str) -> None:
    """Issue payloads from a child process that is then SIGKILLed mid-"render" (never finalized)."""
    code = ("import os, sys; from pathlib import Path; from locpipe.watermark.ledger import Ledger\n"
            "for x in sys.argv[2:]: Ledger(Path(sys.argv[1])).issue(distributor='ReelCo', market='us', "
            "episode='ep001', export_id=x)\n"
            "os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(ledger), *exports], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr


def test_a_killed_renders_payload_is_taken_over_by_its_export_and_voided_otherwise(tmp_path):
    """A render SIGKILLed after its payload was issued: the next render of the same export gets the
    same serial (no second row for one export), a dead render's payload for another export is void."""
    path = tmp_path / "ledger.sqlite"
    _issue_and_die(path, "x1", "x2")
    book = Ledger(path)
    assert [(e.export_id, e.serial, e.state) for e in book.entries()] == [("x1", 0, "pending"), ("x2", 1, "pending")]
    again = book.issue(distributor="ReelCo", market="us", episode="ep001", export_id="x1")
    assert again.serial == 0
    assert {e.export_id: e.state for e in book.entries()} == {"x1": "pending", "x2": "void"}
    book.finalize(again)
    assert book.lookup(again).state == "final" and len(book.entries()) == 2
    assert book.issue(distributor="ReelCo", market="us", episode="ep001", export_id="x3").serial == 2
    book.withdraw(book.issue(distributor="ReelCo", market="us", episode="ep001", export_id="x2"))  # a failed render
    assert {e.export_id for e in book.entries()} == {"x1", "x3"}


def test_a_ledger_written_before_states_reads_as_final_and_issues_on(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE payloads (payload_hex TEXT PRIMARY KEY, distributor TEXT NOT NULL, distributor_code "
                "INTEGER NOT NULL, market TEXT NOT NULL, episode TEXT NOT NULL, episode_code INTEGER NOT NULL, serial "
                "INTEGER NOT NULL, export_id TEXT NOT NULL, file TEXT NOT NULL DEFAULT '', created_at TEXT NOT NULL, "
                "UNIQUE (episode_code, serial))")
    old = Payload(distributor_code("ReelCo"), episode_code("ep001"), 0)
    con.execute("INSERT INTO payloads VALUES (?, 'ReelCo', ?, 'us', 'ep001', ?, 0, 'x0', '', '2026-01-01')",
                (old.hex, old.distributor, old.episode))
    con.commit()
    con.close()
    book = Ledger(path)
    assert book.lookup(old).state == "final"
    assert book.issue(distributor="ReelCo", market="us", episode="ep001", export_id="x0").serial == 1  # final: new


def test_one_house_ledger_by_default_configurable_once(tmp_path, monkeypatch):
    from locpipe.errors import ConfigError
    from locpipe.watermark.ledger import ledger_location

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("LOCPIPE_USER_CONFIG", str(tmp_path / "cfg" / "config.yaml"))
    assert ledger_location() == (tmp_path / "data" / "locpipe" / "forensic-ledger.sqlite", "the house default")
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "config.yaml").write_text("ledger: forensics/house.sqlite\n")
    path, source = ledger_location()
    assert path == tmp_path / "cfg" / "forensics" / "house.sqlite" and "config.yaml" in source
    monkeypatch.setenv("LOCPIPE_LEDGER", str(tmp_path / "env.sqlite"))
    assert ledger_location() == (tmp_path / "env.sqlite", "$LOCPIPE_LEDGER")
    assert ledger_location(tmp_path / "x.sqlite")[0] == tmp_path / "x.sqlite"
    (tmp_path / "cfg" / "config.yaml").write_text("ledgr: typo.sqlite\n")
    monkeypatch.delenv("LOCPIPE_LEDGER")
    with pytest.raises(ConfigError, match="ledgr"):
        ledger_location()


def test_migrating_a_per_output_ledger_moves_it_with_its_key_once(tmp_path):
    old = tmp_path / "out" / ".locpipe-work" / "forensic-ledger.sqlite"
    key = load_key(old, create=True)
    p = Ledger(old).issue(distributor="ReelCo", market="us", episode="ep001", export_id="x1")
    house = tmp_path / "house" / "forensic-ledger.sqlite"
    done = _cli("ledger", "migrate", str(old), "--to", str(house))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["action"] == "moved"
    assert Ledger(house).lookup(p) is not None and load_key(house, create=False) == key
    assert key_file_for(house).stat().st_mode & 0o077 == 0
    assert not old.exists() and old.with_name(old.name + ".migrated").is_file()
    again = _cli("ledger", "migrate", str(old), "--to", str(house))
    assert again.returncode == 2 and "already migrated" in again.stderr


def test_key_file_is_created_once_private_and_required_for_trace(tmp_path, monkeypatch):
    ledger = tmp_path / "forensic-ledger.sqlite"
    with pytest.raises(Exception, match="no forensic watermark key"):
        load_key(ledger, create=False)
    key = load_key(ledger, create=True)
    assert load_key(ledger, create=True) == key == load_key(ledger, create=False)
    assert key_file_for(ledger).stat().st_mode & 0o077 == 0
    monkeypatch.setenv(KEY_ENV, "studio-secret-from-the-vault")
    assert load_key(ledger, create=False) == b"studio-secret-from-the-vault"


def test_ffmpeg_args_blend_the_pattern_last(tmp_path):
    market = load_market(DEFAULT_CONFIG_DIR, "us")
    assert market.profile.forensic_watermark
    assert not load_market(DEFAULT_CONFIG_DIR, "us-social").profile.forensic_watermark
    src = cut_sample(tmp_path / "src.mp4", 5, 1)
    g = forensic_graph(Payload(1, 2, 3), width=1080, height=1920, key=b"k" * 16, work_dir=tmp_path,
                       input_index=graph.FORENSIC_INPUT, in_label="vpre", out_label="v")
    args = graph.ffmpeg_args(probe(src), tmp_path / "mix.wav", tmp_path / "burn.ass", market.profile,
                              tmp_path / "out.mp4", forensic=g)
    inputs = [args[i + 1] for i, a in enumerate(args) if a == "-i"]
    assert inputs[graph.FORENSIC_INPUT] == str(g.pattern) and g.pattern.stat().st_size > 0
    fgraph = args[args.index("-filter_complex") + 1]
    assert fgraph.index("ass=") < fgraph.index("blend=c0_mode=grainmerge:shortest=1[v]")
    assert fgraph.count("[v]") == 1 and args[args.index("-map") + 1] == "[v]"  # the blend's output is encoded
    plain = graph.ffmpeg_args(probe(src), tmp_path / "mix.wav", tmp_path / "burn.ass", market.profile,
                               tmp_path / "o.mp4")
    assert "blend=" not in plain[plain.index("-filter_complex") + 1] and str(g.pattern) not in plain


# --------------------------------------------------------------------------- real round trips


@pytest.fixture(scope="module")
def marked(tmp_path_factory):
    """A 12 s cut of the sample rendered for `us` (profile shrunk to 540x960) with and
    without the mark (same export id: the visible watermark is identical)."""
    d = tmp_path_factory.mktemp("wm")
    src = cut_sample(d / "cut.mp4", 0, CLIP_SECONDS)
    wav = d / "mix.wav"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=48000:duration={CLIP_SECONDS}", "-ac", "2", str(wav))
    us = load_market(DEFAULT_CONFIG_DIR, "us")
    profile = us.profile.model_copy(update={"width": W, "height": H, "safe_zone": SafeZone(x0=30, y0=80, x1=510,
                                                                                          y1=864)})
    market = Market(config=us.config, profile=profile, source=us.source)
    ledger = d / "forensic-ledger.sqlite"
    key = load_key(ledger, create=True)
    spec = ForensicSpec(key=key, ledger=ledger, export_file="/out/us/ep001.mp4")
    from locpipe.artifacts import SubtitleTrack

    out_dir = d / "render"
    track = SubtitleTrack(language="en", events=[])
    result = render.render_export(probe(src), wav, track, d, market, episode="ep001", distributor="ReelCo",
                                  export_id="x7f3a9c21", out_dir=out_dir, forensic=spec)
    plain = render.render_export(probe(src), wav, track, d, market, episode="ep001", distributor="ReelCo",
                                 export_id="x7f3a9c21", out_dir=d / "plain")
    assert plain.forensic_payload == ""
    return {"dir": d, "src": src, "video": out_dir / result.video, "result": result, "key": key, "ledger": ledger,
            "out_dir": out_dir, "plain": d / "plain" / plain.video}


def _attack(marked, name: str, *args: str) -> Path:
    out = marked["dir"] / f"{name}.mp4"
    ffmpeg("-i", str(marked["video"]), *args, str(out))
    return out


def _expect_found(marked, video: Path) -> None:
    r = trace(video, marked["key"])
    assert r.found, f"{video.name}: R={r.statistic:.1f} crc={r.crc_ok}"
    assert r.payload is not None and r.payload.hex == marked["result"].forensic_payload
    assert r.statistic >= R_THRESHOLD > r.null_max


def test_render_issues_a_ledger_entry_and_carries_the_mark(marked):
    result = marked["result"]
    assert result.forensic_payload and not (marked["out_dir"] / "forensic-pattern.y4m").exists()
    entry = Ledger(marked["ledger"]).lookup(Payload.from_hex(result.forensic_payload))
    assert entry is not None and (entry.distributor, entry.market, entry.episode, entry.export_id) == (
        "ReelCo", "us", "ep001", "x7f3a9c21") and entry.file == "/out/us/ep001.mp4"
    _expect_found(marked, marked["video"])


def test_psnr_against_the_unmarked_render_is_above_38_db(marked):
    from locpipe.media.ffmpeg import ffmpeg_exe

    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-i", str(marked["video"]), "-i", str(marked["plain"]),
                           "-lavfi", "[0:v][1:v]psnr", "-f", "null", "-"], capture_output=True, text=True, check=True)
    y = float(proc.stderr.split("PSNR y:")[1].split()[0])
    assert y >= 38.0


def test_survives_crf35_reencode(marked):
    _expect_found(marked, _attack(marked, "crf35", "-c:v", "libx264", "-preset", "medium", "-crf", "35", "-an"))


def test_survives_downscale(marked):
    _expect_found(marked, _attack(marked, "down", "-vf", f"scale={W * 2 // 3}:{H * 2 // 3 // 2 * 2}", *REENC))


def test_survives_crop_and_rescale(marked):
    _expect_found(marked, _attack(marked, "crop", "-vf", f"crop=iw*0.9:ih*0.9:0:ih*0.04,scale={W}:{H}", *REENC))


def test_unmarked_video_and_wrong_key_claim_nothing(marked):
    for video, key in ((marked["src"], marked["key"]), (marked["plain"], marked["key"]),
                       (marked["video"], b"another studio's key")):
        r = trace(video, key)
        assert not r.found and r.payload is None and r.statistic < R_THRESHOLD and r.p_value > 1e-6


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "LOCPIPE_LEDGER")}
    return subprocess.run([sys.executable, "-m", "locpipe", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


def test_trace_command_exit_codes_and_json(marked, tmp_path):
    found = _cli("trace", str(marked["video"]), "--ledger", str(marked["ledger"]))
    assert found.returncode == 0, found.stderr
    report = json.loads(found.stdout)
    assert report["found"] and report["payload"]["hex"] == marked["result"].forensic_payload
    assert report["ledger"]["distributor"] == "ReelCo" and report["ledger"]["market"] == "us"
    assert report["confidence"]["statistic"] >= report["confidence"]["threshold"]
    assert report["confidence"]["false_positive_rate"] < 1e-7

    missing = _cli("trace", str(marked["plain"]), "--ledger", str(marked["ledger"]))
    assert missing.returncode == 1, missing.stderr
    report = json.loads(missing.stdout)
    assert report["found"] is False and report["message"] == "no mark found" and report["payload"] is None

    no_key = _cli("trace", str(marked["video"]), "--ledger", str(tmp_path / "elsewhere.sqlite"))
    assert no_key.returncode == 2 and "no forensic watermark key" in no_key.stderr


def test_trace_with_a_wrong_key_says_the_key_may_be_wrong(marked, tmp_path):
    """No mark found, but the ledger holds payloads for this episode: the report says the key may be
    wrong and names the key the payloads were issued with; a copy of another episode stays "no mark found"."""
    import shutil

    leak = tmp_path / "ep001.mp4"
    shutil.copy(marked["video"], leak)
    env = {k: v for k, v in os.environ.items() if k != "LOCPIPE_LEDGER"}
    env[KEY_ENV] = "not the studio key, but long enough"
    proc = subprocess.run([sys.executable, "-m", "locpipe", "trace", str(leak), "--ledger", str(marked["ledger"])],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout)
    from locpipe.watermark.keys import key_fingerprint

    assert report["key_may_be_wrong"] and "the key may be wrong" in report["message"]
    assert key_fingerprint(marked["key"]) in report["message"]  # the key its payloads were issued with
    other = tmp_path / "ep999.mp4"
    shutil.copy(marked["video"], other)
    proc = subprocess.run([sys.executable, "-m", "locpipe", "trace", str(other), "--ledger", str(marked["ledger"])],
                          capture_output=True, text=True, env=env, cwd=ROOT)
    assert json.loads(proc.stdout)["message"] == "no mark found"


def test_a_migrated_ledger_with_another_key_is_archived_and_still_traced(marked, tmp_path):
    """The house ledger already exists with its own key: the old ledger is archived whole with its
    key; `trace` of one of its marks through the house ledger finds it, and the house ledger's new
    serials start above the archived ones."""
    import shutil

    old = tmp_path / "old" / "forensic-ledger.sqlite"
    old.parent.mkdir()
    shutil.copy(marked["ledger"], old)
    shutil.copy(key_file_for(marked["ledger"]), key_file_for(old))
    house = tmp_path / "house" / "forensic-ledger.sqlite"
    load_key(house, create=True)
    Ledger(house).entries()  # an existing house ledger, another key
    done = _cli("ledger", "migrate", str(old), "--to", str(house))
    assert done.returncode == 0 and json.loads(done.stdout)["action"] == "archived", done.stderr
    traced = _cli("trace", str(marked["video"]), "--ledger", str(house))
    assert traced.returncode == 0, traced.stderr
    report = json.loads(traced.stdout)
    assert report["payload"]["hex"] == marked["result"].forensic_payload and report["ledger"]["distributor"] == "ReelCo"
    assert ".archive" in report["ledger_path"]
    issued = Payload.from_hex(marked["result"].forensic_payload)
    assert Ledger(house).issue(distributor="Z", market="us", episode="ep001", export_id="z").serial > issued.serial


def test_trace_without_flags_reads_the_house_ledger_that_run_writes_to(marked, tmp_path, monkeypatch):
    """`run` and `trace` share one default: the house ledger (here $XDG_DATA_HOME/locpipe/)."""
    import shutil

    from locpipe.watermark.ledger import ledger_path

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    house = ledger_path()
    assert house == tmp_path / "data" / "locpipe" / "forensic-ledger.sqlite"
    house.parent.mkdir(parents=True)
    shutil.copy(marked["ledger"], house)
    shutil.copy(key_file_for(marked["ledger"]), key_file_for(house))
    traced = _cli("trace", str(marked["video"]))
    assert traced.returncode == 0, traced.stderr
    report = json.loads(traced.stdout)
    assert report["ledger_path"] == str(house) and report["ledger"]["distributor"] == "ReelCo"
    where = _cli("ledger", "where")
    assert str(house) in where.stdout and str(key_file_for(house)) in where.stdout
