"""One decode for many outputs, and A/B distributor copies assembled by stream copy.

The media tests use a 6 s portrait clip rendered to the real 1080x1920 profiles (a few
seconds of encoding each); the A/B copies are checked frame for frame against the
segments they were assembled from.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
from conftest import ffmpeg, make_clip

from locpipe.artifacts import SubtitleEvent, SubtitleTrack
from locpipe.config import DEFAULT_CONFIG_DIR, WatermarkPolicy, load_market
from locpipe.media.probe import probe
from locpipe.render import ab as render_ab
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.watermark.ab import ab_symbols
from locpipe.watermark.forensic import ForensicSpec
from locpipe.watermark.keys import load_key
from locpipe.watermark.ledger import Ledger
from locpipe.watermark.payload import Payload

SECONDS = 6.0


# --------------------------------------------------------------------------- pure parts


def test_windows_are_keyed_gop_aligned_and_one_per_block():
    policy = WatermarkPolicy()  # 1 s windows, one per 30 s
    seg = 0.5
    w37 = render_ab.plan_windows(75, seg, policy, seed="batch:a")
    assert len(w37) == 1 and w37[0][1] - w37[0][0] == 2 and 0 <= w37[0][0] and w37[0][1] <= 75
    w90 = render_ab.plan_windows(180, seg, policy, seed="batch:a")
    assert len(w90) == 3 and all(b - a == 2 for a, b in w90)
    assert all(i * 60 <= a and b <= (i + 1) * 60 for i, (a, b) in enumerate(w90))  # one in each third
    assert w90 == render_ab.plan_windows(180, seg, policy, seed="batch:a")
    others = {tuple(render_ab.plan_windows(180, seg, policy, seed=f"batch:{i}")) for i in range(8)}
    assert len(others) > 4  # distributors get different places
    assert render_ab.plan_windows(3, seg, policy, seed="x") == render_ab.plan_windows(3, seg, policy, seed="x")
    assert len(render_ab.plan_windows(1, seg, policy, seed="x")) == 1  # a one-GOP episode still gets one


def test_sequence_takes_windows_then_symbols():
    got = render_ab.sequence(np.array([1, -1, 1, -1, -1]), [(1, 3)])
    assert got == [("A", 0), ("W0", 0), ("W0", 1), ("B", 3), ("B", 4)]


def test_neutral_template_drops_the_distributor_fields():
    policy = WatermarkPolicy(template="{distributor} | {market} {episode} #{export_id}")
    assert render_ab.neutral_template(policy).template == "| {market} {episode} #"
    assert render_ab.exact_rate(None, 29.97002997) == render_ab.Fraction(30000, 1001)
    assert render_ab.exact_rate(None, 29.97) == render_ab.Fraction(30000, 1001)  # as probes round it
    assert render_ab.exact_rate(None, 23.976) == render_ab.Fraction(24000, 1001)
    assert render_ab.exact_rate(30.0, 29.97) == 30 and render_ab.exact_rate(None, 25.0) == 25
    assert render_ab.frame_count(6.0, render_ab.Fraction(30)) == 180


def test_one_run_decodes_once_for_every_market(tmp_path):
    us, social = (load_market(DEFAULT_CONFIG_DIR, c) for c in ("us", "us-social"))

    def run_args(size: str) -> tuple[list[str], list[str]]:
        info = probe(make_clip(tmp_path / f"{size}.mp4", seconds=1, size=size))
        encodes = [graph.Encode(us.profile, tmp_path / "us.ass", tmp_path / "us.mp4", audio_wav=tmp_path / "a.wav"),
                   graph.Encode(social.profile, tmp_path / "s.ass", tmp_path / "s.mp4", audio_wav=tmp_path / "b.wav"),
                   graph.Encode(us.profile, tmp_path / "us.ass", tmp_path / "v%05d.ts", segmented=True)]
        args = graph.shared_render_args(info, encodes)
        assert [a for a in args if a == str(info.path)] == [str(info.path)]  # the source is opened once
        return args, [args[i + 1] for i, a in enumerate(args) if a == "-filter_complex"]

    # 16:9: blur-pad and crop differ -> one graph per reframe, each fed by the one decode
    args, graphs = run_args("640x360")
    assert len(graphs) == 2 and all(g.count("[0:v:0]") == 1 for g in graphs)
    assert sum(g.count("boxblur") for g in graphs) == 1 and sum(g.count("crop=1080:1920") for g in graphs) == 1
    assert sum(g.count("ass=filename") for g in graphs) == 2  # the two us encodes share their subtitle pass
    assert args.count("-movflags") == 2 and args.count("segment") == 1 and "-copyts" in args
    # 9:16: both profiles only scale it -> one graph, one scaler, split after it
    _, graphs = run_args("360x640")
    assert len(graphs) == 1 and graphs[0].count("scale=1080:1920:flags=lanczos") == 1


# --------------------------------------------------------------------------- media


def _frames(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="gray") for f in c.decode(c.streams.video[0])]


@pytest.fixture(scope="module")
def ab_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ab")
    market = load_market(DEFAULT_CONFIG_DIR, "us")
    policy = market.config.watermark.model_copy(update={"distributor_every": 5.0})
    market = market.model_copy(update={"config": market.config.model_copy(update={"watermark": policy})})
    src = make_clip(d / "src.mp4", seconds=SECONDS, size="360x640")
    wav = d / "mix.wav"
    ffmpeg("-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={SECONDS}", "-ac", "2", str(wav))
    track = SubtitleTrack(language="en", events=[SubtitleEvent(start=0.5, end=5.0, lines=["Sign it."], cue_index=0)])
    ledger = d / "ledger.sqlite"
    spec = ForensicSpec(key=load_key(ledger, create=True), ledger=ledger, export_file="")
    info = probe(src)
    base = render.run_shared(info, [render_ab.prepare_base(info, render_ab.BaseJob(
        market, wav, track, "ep009", d / "base", spec))])[0]
    copies = {}
    for name in ("ReelCo", "DramaHub"):
        job = render_ab.DistributorJob(market, base, d / "base", track, d, "ep009", name, f"x-{name}", d / name,
                                       spec)
        copies[name] = render_ab.assemble(info, job)
    return d, info, spec, base, copies


def test_base_has_both_variants_in_closed_gop_segments(ab_run):
    d, _info, spec, base, _ = ab_run
    assert base.n_frames == 180 and base.gop == 15 and base.n_segments == 12 and base.variants == ["A", "B"]
    for v in base.variants:
        segments = sorted((d / "base" / v).glob("*.ts"))
        assert len(segments) == 12
        with av.open(str(segments[3])) as c:
            packets = [p for p in c.demux(c.streams.video[0]) if p.size]
        assert len(packets) == 15 and packets[0].is_keyframe and not any(p.is_keyframe for p in packets[1:])
    assert Ledger(spec.ledger).batch_info(Payload.from_hex(base.batch_payload)).n_frames == 180
    assert base.watermark_text == "us ep009"  # the shared mark names no distributor


def test_copies_are_exactly_their_segments(ab_run):
    d, info, spec, base, copies = ab_run
    parts = {v: [_frames(f) for f in sorted((d / "base" / v).glob("*.ts"))] for v in base.variants}
    for name, result in copies.items():
        video = d / name / result.video
        frames = _frames(video)
        assert len(frames) == 180
        with av.open(str(video)) as c:
            a = c.streams.audio[0]
            assert a.codec_context.name == "aac" and abs(float(a.duration * a.time_base) - SECONDS) < 0.1
        symbols = ab_symbols(spec.key, Payload.from_hex(base.batch_payload), result.ab_member, base.n_segments)
        assert len(result.distributor_windows) == 1
        w0, w1 = (round(t / 0.5) for t in result.distributor_windows[0])
        for s in range(base.n_segments):
            got = frames[s * 15:(s + 1) * 15]
            want = parts["A" if symbols[s] > 0 else "B"][s]
            same = all(np.array_equal(g, w) for g, w in zip(got, want))
            assert same == (not w0 <= s < w1), (name, s)  # only the window differs from its variant
    assert {r.ab_member for r in copies.values()} == {0, 1}
    assert copies["ReelCo"].watermark_text == "ReelCo us ep009 x-ReelCo"


def test_window_shows_the_distributor_and_matches_its_neighbours(ab_run):
    d, _info, _spec, _base, copies = ab_run
    result = copies["DramaHub"]
    a, b = result.distributor_windows[0]
    frames = _frames(d / "DramaHub" / result.video)
    inside, edge = frames[int(a * 30) + 5], frames[int(a * 30) - 1] if a > 0 else frames[int(b * 30)]
    # the picture continues across the splice (same content, same timestamps) ...
    assert np.mean(np.abs(frames[int(a * 30)].astype(int) - frames[int(a * 30) + 1].astype(int))) < 12
    # ... and the window carries text the base does not (the distributor's mark)
    other = copies["ReelCo"]
    o = _frames(d / "ReelCo" / other.video)[int(a * 30) + 5]
    assert not np.array_equal(inside, o) and edge.shape == inside.shape
