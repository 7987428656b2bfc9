"""A/B forensic marking (watermark/ab.py): symbols, pattern, ledger batches, real round trips.

The media tests mark a 20 s cut of the bundled sample at 540x960 (as tests/test_watermark.py:
the mark is defined relative to the frame) with ``episode_pattern`` for one member's
symbols, blended by ffmpeg exactly as the render does (bilinear upscale of the Y4M clip at
the video rate + grainmerge), encode with libx264 and run ``locpipe trace``'s report on it.
The full 1080x1920 attack suite is benchmarks/watermark.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from conftest import cut_sample, ffmpeg

from locpipe.watermark import ab
from locpipe.watermark.forensic import PATTERN_FPS, node_pattern, pattern_frames
from locpipe.watermark.keys import KEY_ENV, load_key
from locpipe.watermark.ledger import Ledger, batch_distributor
from locpipe.watermark.payload import Payload, distributor_code
from locpipe.watermark.trace import trace_report

ROOT = Path(__file__).resolve().parent.parent
W, H = 540, 960
FPS, GOP = 30, 15
SECONDS = 20
N_FRAMES = FPS * SECONDS
DISTRIBUTORS = ["ReelCo", "ShortsHub", "DramaBox-EU", "VertiFlix", "MiniPlay"]
ENC = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p", "-an"]


@pytest.fixture(autouse=True)
def _no_key_env(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("LOCPIPE_LEDGER", raising=False)


# --------------------------------------------------------------------------- pure parts


def test_symbols_are_keyed_balanced_and_prefix_stable():
    key, batch = b"k" * 16, Payload(1, 2, 3)
    s = ab.ab_symbols(key, batch, 4, 500)
    assert s.dtype == np.int8 and set(np.unique(s)) == {-1, 1} and abs(int(s.sum())) < 80
    assert np.array_equal(ab.ab_symbols(key, batch, 4, 77), s[:77])  # the detector generates the whole episode
    others = [ab.ab_symbols(key, batch, 5, 500), ab.ab_symbols(key, Payload(1, 2, 4), 4, 500),
              ab.ab_symbols(b"j" * 16, batch, 4, 500), ab.null_symbols(key, batch, 4, 500)]
    for o in others:
        assert abs(float(np.mean(o == s)) - 0.5) < 0.1
    with pytest.raises(ValueError):
        ab.ab_symbols(key, batch, -1, 10)


def test_episode_pattern_layers():
    key, batch = b"k" * 16, Payload(1, 2, 3)
    # without the A/B layer it is the single-layer pattern, now at any frame rate
    single = ab.episode_pattern(key, batch, fps=PATTERN_FPS, n_frames=25, gop=GOP, symbols=None)
    period = pattern_frames(node_pattern(batch, key))
    assert np.array_equal(single, np.concatenate([period, period, period[:5]]))
    n = 4 * GOP
    a = ab.episode_pattern(key, batch, fps=FPS, n_frames=n, gop=GOP, symbols=np.full(4, 1)).astype(float)
    b = ab.episode_pattern(key, batch, fps=FPS, n_frames=n, gop=GOP, symbols=np.full(4, -1)).astype(float)
    layer = (a - b) / 2  # the A/B layer alone (the common layer is identical in A and B)
    seg = layer.reshape(4, GOP, *layer.shape[1:])
    assert np.abs(seg.mean(axis=1)).max() < 0.5  # zero-mean per segment: static content cancels
    assert np.abs(layer[::GOP]).max() <= 1  # zero at segment starts: A/B splices leave no step
    assert np.abs(layer).max() == pytest.approx(ab.AB_AMPLITUDE, abs=1.0)
    assert ab.AB_COMMON_AMPLITUDE ** 2 + ab.AB_AMPLITUDE ** 2 <= 25.0
    # a window re-render gets the same frames as the whole episode
    sym = ab.ab_symbols(key, batch, 0, 4)
    whole = ab.episode_pattern(key, batch, fps=FPS, n_frames=n, gop=GOP, symbols=sym)
    part = ab.episode_pattern(key, batch, fps=FPS, n_frames=20, gop=GOP, symbols=sym, start_frame=17)
    assert np.array_equal(whole[17:37], part)
    with pytest.raises(ValueError, match="symbols"):
        ab.episode_pattern(key, batch, fps=FPS, n_frames=n + 1, gop=GOP, symbols=sym)


def test_pattern_clip_is_read_at_the_exact_rate(tmp_path):
    import av

    luma = ab.episode_pattern(b"k" * 16, Payload(1, 2, 3), fps=Fraction(30000, 1001), n_frames=45, gop=GOP,
                              symbols=np.ones(3))
    clip = ab.write_pattern_clip(tmp_path / "p.y4m", luma, 30000 / 1001)
    assert clip.read_bytes().startswith(b"YUV4MPEG2 W16 H28 F30000:1001 ")
    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        frames = [f.to_ndarray()[:28] for f in c.decode(stream)]  # yuv420p: the Y plane's rows
        assert stream.average_rate == Fraction(30000, 1001)
    assert len(frames) == 45 and np.array_equal(np.stack(frames), luma)


def test_chernoff_evidence_is_a_valid_bound_and_reaches_n_bits():
    rng = np.random.default_rng(3)
    n = 40
    d = rng.normal(0, 1, n) + 0.8  # any d: a biased one like a variant-A copy
    lo, hi = np.array([0]), np.array([n])
    perfect = np.sign(d)[None]
    ev = ab.chernoff_log10_p((perfect @ d)[:, None], d, lo, hi)
    assert ev[0, 0] == pytest.approx(n * np.log10(2), rel=0.02)
    coins = rng.choice([-1.0, 1.0], size=(20000, n))
    ev = ab.chernoff_log10_p((coins @ d)[:, None], d, lo, hi)[:, 0]
    for decades in (1.0, 2.0, 3.0):
        assert np.mean(ev >= decades) <= 10 ** -decades


# --------------------------------------------------------------------------- ledger


def test_ledger_batches_members_and_old_ledgers(tmp_path):
    path = tmp_path / "forensic-ledger.sqlite"
    con = sqlite3.connect(path)  # a ledger from before A/B mode: only the payloads table
    from locpipe.watermark import ledger as ledger_mod

    con.execute(ledger_mod._SCHEMA)
    con.commit()
    con.close()
    book = Ledger(path)
    single = book.issue(distributor="ReelCo", market="us", episode="ep001", export_id="x1")
    batch, idx = book.issue_batch(market="us", episode="ep001", distributors=DISTRIBUTORS[:3],
                                  export_ids=["a0", "a1", "a2"], files=["/o/0.mp4", "/o/1.mp4", ""],
                                  fps=30000 / 1001, gop=15, n_frames=1111)
    assert idx == [0, 1, 2] and batch.serial == single.serial + 1
    assert batch.distributor == distributor_code(batch_distributor("us"))
    entry = book.lookup(batch)
    assert entry is not None and entry.distributor == "ab-batch:us" and entry.episode == "ep001"
    info = book.batch_info(batch)
    assert info is not None and info.rate == Fraction(30000, 1001) and info.gop == 15 and info.n_segments == 75
    assert book.batch_info(single) is None and book.members(single) == []
    assert book.add_members(batch, distributors=["Late"], export_ids=["a3"]) == [3]
    assert book.ensure_member(batch, distributor="Late", export_id="a3") == 3  # already there
    assert book.ensure_member(batch, distributor="Later", export_id="a4", file="/o/4.mp4") == 4
    book.withdraw_member(batch, 4)
    book.record_member_file(batch, 2, "/o/2.mp4")
    members = book.members(batch)
    assert [(m.index, m.distributor, m.file) for m in members] == [
        (0, "ReelCo", "/o/0.mp4"), (1, "ShortsHub", "/o/1.mp4"), (2, "DramaBox-EU", "/o/2.mp4"), (3, "Late", "")]
    with pytest.raises(Exception, match="not an A/B batch"):
        book.add_members(single, distributors=["x"], export_ids=["y"])
    with pytest.raises(ValueError):
        book.issue_batch(market="us", episode="ep001", distributors=["a"], export_ids=[], fps=30, gop=15,
                         n_frames=10)
    empty, none = book.issue_batch(market="fr", episode="ep001", distributors=[], export_ids=[], fps=30, gop=15,
                                   n_frames=300)  # members added as their copies are assembled
    assert none == [] and book.members(empty) == [] and book.batch_info(empty).n_segments == 20
    book.withdraw_batch(batch)
    assert book.lookup(batch) is None and book.members(batch) == [] and book.batch_info(batch) is None
    assert book.lookup(single) is not None


# --------------------------------------------------------------------------- real round trips


def _mark(src: Path, out: Path, key: bytes, batch: Payload, symbols: np.ndarray | None, work: Path) -> Path:
    luma = ab.episode_pattern(key, batch, fps=FPS, n_frames=N_FRAMES, gop=GOP, symbols=symbols)
    clip = ab.write_pattern_clip(work / f"{out.stem}.y4m", luma, FPS)
    ffmpeg("-i", str(src), "-i", str(clip), "-filter_complex",
           f"[0:v]scale={W}:{H},format=yuv420p[in];[1:v]scale={W}:{H}:flags=bilinear[p];"
           "[in][p]blend=all_mode=grainmerge[out]", "-map", "[out]", *ENC, str(out))
    return out


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A 5-member batch on a 20 s cut; copies for members 2 and 3, variant A, unmarked."""
    d = tmp_path_factory.mktemp("ab")
    src = cut_sample(d / "cut.mp4", 0, SECONDS)
    ledger = d / "forensic-ledger.sqlite"
    key = load_key(ledger, create=True)
    payload, idx = Ledger(ledger).issue_batch(market="us", episode="ep001", distributors=DISTRIBUTORS,
                                              export_ids=[f"x{i}" for i in range(5)],
                                              files=[f"/out/us/{n}/ep001.mp4" for n in DISTRIBUTORS],
                                              fps=FPS, gop=GOP, n_frames=N_FRAMES)
    nseg = ab.n_segments_for(N_FRAMES, GOP)
    videos = {j: _mark(src, d / f"member{j}.mp4", key, payload, ab.ab_symbols(key, payload, j, nseg), d)
              for j in (2, 3)}
    videos["A"] = _mark(src, d / "variantA.mp4", key, payload, np.full(nseg, 1), d)
    videos["plain"] = d / "plain.mp4"
    ffmpeg("-i", str(src), "-vf", f"scale={W}:{H}", *ENC, str(videos["plain"]))
    return {"dir": d, "ledger": ledger, "key": key, "payload": payload, "videos": videos}


def _report(batch, video: Path) -> tuple[dict, bool]:
    return trace_report(video, batch["ledger"])


@pytest.mark.parametrize("member", [2, 3])
def test_trace_names_the_member(batch, member):
    report, found = _report(batch, batch["videos"][member])
    assert found and report["payload"]["hex"] == batch["payload"].hex
    assert report["distributor_determined"] is True, report["ab"]
    assert report["ledger"]["index"] == member and report["ledger"]["distributor"] == DISTRIBUTORS[member]
    assert report["ledger"]["export_id"] == f"x{member}" and report["ledger"]["market"] == "us"
    abr = report["ab"]
    assert abr["index"] == member and abr["score"] >= abr["threshold"] > abr["null_max"]
    assert abr["runner_up"] < abr["threshold"] and abs(abr["offset_seconds"]) < 0.1
    assert abr["candidates"] == 5 and report["ab"]["batch"]["distributor"] == "ab-batch:us"


def test_excerpt_from_an_unaligned_start_names_the_member(batch):
    start = 2.27  # not a segment boundary (0.5 s), not a sample step
    excerpt = batch["dir"] / "excerpt.mp4"
    # 17 s = 34 segments: 1 bit each, enough to clear a 1e-6 false claim over 5 members x offsets
    ffmpeg("-ss", f"{start}", "-i", str(batch["videos"][3]), "-t", "17", *ENC, str(excerpt))
    report, found = _report(batch, excerpt)
    assert found and report["distributor_determined"], report.get("ab")
    assert report["ab"]["index"] == 3 and report["ledger"]["distributor"] == DISTRIBUTORS[3]
    assert abs(report["ab"]["offset_seconds"] - start) < 0.1


def test_variant_a_and_unmarked_claim_no_distributor(batch):
    report, found = _report(batch, batch["videos"]["A"])
    assert found and report["payload"]["hex"] == batch["payload"].hex  # the common layer is there
    assert report["distributor_determined"] is False and report["ab"]["index"] is None
    assert report["ab"]["score"] < report["ab"]["threshold"]
    assert report["ledger"]["distributor"] == "ab-batch:us" and len(report["ab"]["members"]) == 5
    assert report["message"] == "A/B batch found, distributor undetermined"
    report, found = _report(batch, batch["videos"]["plain"])
    assert not found and report["ledger"] is None and "ab" not in report and not report["distributor_determined"]


def test_trace_command_reports_the_member(batch):
    env = {k: v for k, v in os.environ.items() if k not in (KEY_ENV, "LOCPIPE_LEDGER")}
    proc = subprocess.run([sys.executable, "-m", "locpipe", "trace", str(batch["videos"][2]), "--ledger",
                           str(batch["ledger"])], capture_output=True, text=True, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["distributor_determined"] and report["ledger"]["distributor"] == DISTRIBUTORS[2]
