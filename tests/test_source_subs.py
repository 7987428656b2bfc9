"""Source subtitles: detection on the real sample, rejection of pictures without them, and
the render mask (pure graph parts, then a real render of a cut of the sample).

Detection runs the real PP-OCRv4 models from the rapidocr-onnxruntime wheel: the sample
takes a few seconds, the short clips about one each.
"""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import style_corpus as sc
from conftest import SAMPLE, SAMPLE_SCRIPT, cut_sample, ffmpeg, make_clip

from locpipe.artifacts import MediaInfo, OnScreenText, SourceSubtitles, SubtitleTrack
from locpipe.config import DEFAULT_CONFIG_DIR, load_market
from locpipe.media.probe import probe
from locpipe.metrics import cer
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.stages import source_subs as ss

pytest.importorskip("rapidocr_onnxruntime")

REF = json.loads(SAMPLE_SCRIPT.read_text(encoding="utf-8"))
INTRO_END = 1.4  # music only before the first line
CUT_START, CUT_SECONDS = 2.0, 8.0


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def _ref_band() -> tuple[int, int, int, int]:
    b = REF["subtitle_band"]
    return b["x"], b["y"], b["w"], b["h"]


def _overlapping(intervals: list[OnScreenText], start: float, end: float) -> list[OnScreenText]:
    return [iv for iv in intervals if iv.start < end and iv.end > start]


# --------------------------------------------------------------------------- pure parts


OPTS = ss.SourceSubsOptions()


def test_text_distance_ignores_punctuation_jitter():
    assert ss.text_distance("陆总，您找我？", "陆总,您找我?") == 0.0
    assert ss.text_distance("陆总，您找我？", "陆总，您找我") == 0.0
    assert ss.text_distance("是我签的", "是我答的") == 0.25
    assert ss.text_distance("你姐？林薇？", "公司因为它亏了五百万。") > 0.8


def test_readings_become_centred_intervals_with_jitter_and_dropouts_merged():
    r = ss.Reading
    readings = [r(0.0, ""), r(0.25, "你好吗", 0.9), r(0.5, "你好吗", 0.95), r(0.75, "", 0.0),  # one dropout
                r(1.0, "你好马", 0.6), r(1.25, ""), r(1.5, ""), r(1.75, "再见", 0.99), r(2.1, "再见", 0.98)]
    out = [iv for iv, _ in ss.readings_to_intervals(readings, OPTS, duration=2.2)]
    assert [(iv.start, iv.end, iv.text) for iv in out] == [(0.125, 1.125, "你好吗"), (1.625, 2.2, "再见")]
    assert out[0].confidence == pytest.approx(0.925)
    # VFR: boundaries sit halfway to the neighbouring samples, whatever their spacing
    vfr = [iv for iv, _ in ss.readings_to_intervals([r(0.0, ""), r(0.4, "好", 1.0), r(0.5, "")], OPTS,
                                                     duration=1.0)]
    assert (vfr[0].start, vfr[0].end) == (0.2, 0.45)


def _line(y: float, text: str, x0: float = 150, x1: float = 390) -> ss.Line:
    return ss.Line(x0, y, x1, y + 36, text, 0.95)


def _blocks(items):
    return [(t, b) for t, ln in items for b in ss.blocks([ln])]


def test_band_needs_recurring_changing_centred_cjk():
    subs = [(1.0, _line(760, "陆总，您找我？")), (2.0, _line(762, "陆总，您找我？")), (3.0, _line(758, "是我签的"))]
    assert ss.find_band(_blocks(subs), OPTS) == (758, 798, 36)
    sign = [(t, _line(700, "北京烤鸭")) for t in (1.0, 2.0, 3.0, 4.0)]  # scene text / logo: never changes
    assert ss.find_band(_blocks(sign), OPTS) is None
    assert ss.find_band(_blocks(subs[:2]), OPTS) is None  # too few samples
    # a centred title seen in more samples than the dialogue does not hide the dialogue band
    title = [(t, _line(40, "第3集")) for t in (0.0, 1.0, 2.0, 3.0, 4.0)]
    assert ss.find_band(_blocks(title + subs), OPTS) == (758, 798, 36)
    off_centre = _line(760, "出口", x0=10, x1=120)
    assert not ss.is_subtitle_line(off_centre, 540, OPTS)
    assert not ss.is_subtitle_line(_line(760, "EXIT"), 540, OPTS)
    assert ss.is_subtitle_line(_line(760, "出口"), 540, OPTS)


def test_glyph_comparison_survives_a_moving_background():
    text = np.zeros((40, 200), bool)
    text[10:30, 20:180:8] = True  # vertical strokes

    def frame(bg_shift: int, glyphs: np.ndarray | None) -> np.ndarray:
        x = np.arange(200)[None, :] + bg_shift  # a smooth scene panning sideways
        bg = np.repeat(90 + 60 * np.sin(x / 6.0), 40, axis=0).astype(np.uint8)
        if glyphs is not None:
            bg[glyphs] = 250
        return bg
    ref = frame(0, text)
    mask = ss.edge_mask(ref, [ss.Line(15, 5, 185, 35, "x", 1.0)])
    assert ss.same_glyphs(ref, frame(7, text), mask) > 0.6
    other = np.zeros_like(text)
    other[12:28:5, 20:180] = True  # another line: horizontal strokes
    assert ss.same_glyphs(ref, frame(7, other), mask) < 0.4
    assert ss.same_glyphs(ref, frame(7, None), mask) < 0.4


def test_read_ahead_keeps_order_raises_the_producers_error_and_stops_when_left():
    import threading
    import time

    from locpipe.media.frames import read_ahead

    assert list(read_ahead(iter(range(50)), 3)) == list(range(50))

    def failing():
        yield 1
        raise ValueError("corrupt frame")
    got = []
    with pytest.raises(ValueError, match="corrupt frame"):
        for x in read_ahead(failing()):
            got.append(x)
    assert got == [1]

    produced, closed = [], threading.Event()

    def endless():
        try:
            i = 0
            while True:
                produced.append(i)
                yield i
                i += 1
        finally:
            closed.set()
    it = read_ahead(endless(), 2)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()  # the stage leaving early (a band never found in the buffered frames)
    assert closed.wait(2.0)
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 3 + 2 + 2  # stopped, never ran far ahead


def test_ocr_sessions_do_not_spin_and_read_the_same(ocr_engine):
    """The rebuilt ONNX sessions read exactly what RapidOCR's own sessions read."""
    from rapidocr_onnxruntime import RapidOCR

    frame = sc.frames_at(SAMPLE, [4.0])[0].astype(np.uint8)  # a line is on screen
    img = np.ascontiguousarray(frame[frame.shape[0] * 7 // 10:frame.shape[0] * 9 // 10])
    for holder in (ocr_engine.engine.text_det.infer, ocr_engine.engine.text_rec.session):
        opts = holder.session.get_session_options()
        assert opts.intra_op_num_threads == 2
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    plain = RapidOCR(det_limit_side_len=960, det_limit_type="max", intra_op_num_threads=2, inter_op_num_threads=1)
    ours = [(ln.text, round(ln.score, 4)) for ln in ocr_engine.read(img)]
    theirs, _ = plain(np.repeat(img[:, :, None], 3, axis=2), use_cls=False)
    assert ours == [(str(t).strip(), round(float(sc_), 4)) for _, t, sc_ in theirs or []]
    assert ours and ss.has_cjk(ours[0][0])


def test_band_rect_is_in_source_pixels_padded_and_clipped():
    assert ss.band_rect([(60, 760, 480, 800), (70, 720, 470, 758)], 0.75, (720, 1280), 6) == (74, 954, 572, 119)
    assert ss.band_rect([(0, 900, 540, 960)], 0.75, (720, 1280), 6) == (0, 1194, 720, 86)


def _subs(band=(78, 1017, 542, 69), intervals=((1.5, 2.84), (3.44, 5.85)), frame=(720, 1280)) -> SourceSubtitles:
    return SourceSubtitles(found=True, band=band, frame_width=frame[0], frame_height=frame[1], sample_fps=4.0,
                           intervals=[OnScreenText(start=a, end=b, text="字") for a, b in intervals])


def _info(**kw) -> MediaInfo:
    base = dict(path="/x/ep.mp4", sha256="0", size=1, duration=37.37, width=720, height=1280, display_width=720,
                display_height=1280, fps=30.0)
    return MediaInfo(**{**base, **kw})


def test_mask_windows_and_enable_expression():
    windows = graph.mask_windows(_subs(intervals=((0.05, 1.0), (1.2, 2.0), (5.0, 37.3))), duration=37.37)
    assert windows == [(0.0, 2.125), (4.875, 37.37)]  # widened by half a period, merged, clipped
    assert graph.enable_expr(windows) == "between(t,0.000,2.125)+between(t,4.875,37.370)"


def test_mask_rect_even_aligned_and_follows_rotation_and_proxies():
    assert graph.mask_rect(_subs(), _info()) == (78, 1016, 542, 70)
    # detection ran on a 360x640 proxy of a 720x1280 master
    assert graph.mask_rect(_subs(band=(39, 508, 271, 35), frame=(360, 640)), _info()) == (78, 1016, 542, 70)
    # stored 1280x720 with a 90 degree display matrix: ffmpeg delivers 720x1280
    rotated = _info(width=1280, height=720, rotation=90)
    assert graph.mask_rect(_subs(band=(600, 1200, 200, 100)), rotated) == (600, 1200, 120, 80)


def test_mask_goes_first_in_the_graph_and_is_escaped():
    markets = load_market(DEFAULT_CONFIG_DIR, "us")
    many = tuple((i * 2.0, i * 2.0 + 1.0) for i in range(60))
    info = _info(fps=60.0)
    args = graph.ffmpeg_args(info, Path("m.wav"), Path("a.ass"), markets.profile, Path("o.mp4"),
                              source_subs=_subs(intervals=many))
    fgraph = args[args.index("-filter_complex") + 1]
    assert fgraph.startswith("[0:v:0]split=2[msrc][mband];[mband]crop=542:70:78:1016,gblur=")
    assert "overlay=78:1016:enable='between(t\\,0.000" not in fgraph  # quoted, not comma-escaped
    assert "enable='between(t,0.000,1.125)+" in fgraph and fgraph.count("between(") == 60
    assert fgraph.index("fps=30") > fgraph.index("overlay=")
    plain = graph.ffmpeg_args(info, Path("m.wav"), Path("a.ass"), markets.profile, Path("o.mp4"),
                               source_subs=SourceSubtitles(found=False, frame_width=720, frame_height=1280,
                                                           sample_fps=4.0))
    assert "gblur" not in plain[plain.index("-filter_complex") + 1]


# --------------------------------------------------------------------------- detection on real video


@pytest.fixture(scope="module")
def detected(sample) -> SourceSubtitles:
    return ss.detect_source_subtitles(probe(sample))


def test_sample_band_matches_reference(detected):
    assert detected.found and detected.band is not None
    assert (detected.frame_width, detected.frame_height) == (720, 1280)
    assert _iou(detected.band, _ref_band()) >= 0.5


def test_sample_intervals_cover_the_script(detected):
    lines = REF["lines"]
    matched = [(ln, _overlapping(detected.intervals, ln["start"], ln["end"])) for ln in lines]
    assert sum(bool(ov) for _, ov in matched) >= 0.9 * len(lines)
    cers = [min(cer(ln["text"], iv.text) for iv in ov) for ln, ov in matched if ov]
    assert sum(cers) / len(cers) <= 0.1
    assert not _overlapping(detected.intervals, 0.0, INTRO_END)
    assert all(0.0 <= iv.start < iv.end <= REF["duration"] + 0.01 for iv in detected.intervals)
    assert len(detected.intervals) <= len(lines) + 2  # no fragmentation into OCR-jitter pieces


def test_clip_without_subtitles_finds_nothing(tmp_path):
    clip = make_clip(tmp_path / "plain.mp4", seconds=5.0, size="360x640", audio=False)
    res = ss.detect_source_subtitles(probe(clip, require_audio=False))
    assert not res.found and res.intervals == [] and res.band is None


def test_unchanging_centred_text_is_not_a_subtitle(tmp_path):
    """A sign (or channel logo) in the subtitle area shows one text the whole time."""
    from locpipe.assets import fonts_dir

    font = fonts_dir() / "files" / "NotoSansCJK-VF.otf.ttc"
    clip = tmp_path / "sign.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc2=size=720x1280:rate=25:duration=5",
           "-vf", f"drawtext=fontfile={font}:text=北京烤鸭店:fontsize=56:fontcolor=white:borderw=3:"
                  "x=(w-text_w)/2:y=1000",
           "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(clip))
    res = ss.detect_source_subtitles(probe(clip, require_audio=False))
    assert not res.found and res.intervals == []


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    return cut_sample(tmp_path_factory.mktemp("cut") / "cut.mp4", CUT_START, CUT_SECONDS)


def test_rotated_source_reports_display_coordinates(cut, tmp_path):
    """Stored sideways with a display matrix: the band is where the viewer sees it."""
    sideways = tmp_path / "sideways.mp4"
    ffmpeg("-i", str(cut), "-vf", "transpose=1", "-c:v", "libx264", "-preset", "ultrafast", "-an",
           str(tmp_path / "t.mp4"))
    ffmpeg("-display_rotation", "90", "-i", str(tmp_path / "t.mp4"), "-c", "copy", str(sideways))
    info = probe(sideways, require_audio=False)
    assert (info.width, info.height, info.rotation) == (1280, 720, 90)
    res = ss.detect_source_subtitles(info)
    assert res.found and (res.frame_width, res.frame_height) == (720, 1280)
    assert _iou(res.band, _ref_band()) >= 0.5


# --------------------------------------------------------------------------- the mask in a real render


def _cut_subs() -> SourceSubtitles:
    """The reference band and timings, moved onto the cut's timeline."""
    spans = [(ln["start"] - CUT_START, ln["end"] - CUT_START) for ln in REF["lines"]
             if ln["end"] > CUT_START and ln["start"] < CUT_START + CUT_SECONDS]
    return _subs(band=_ref_band(), intervals=tuple((max(0.0, a), min(CUT_SECONDS, b)) for a, b in spans))


@pytest.fixture(scope="module")
def renders(cut, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("mask")
    info = probe(cut)
    wav = d / "mix.wav"
    ffmpeg("-i", str(cut), "-vn", "-ac", "2", "-ar", "48000", str(wav))
    market = load_market(DEFAULT_CONFIG_DIR, "us")
    empty = d / "no-track"
    empty.mkdir()
    out = {}
    for name, subs in (("masked", _cut_subs()), ("plain", None)):
        render.render_export(info, wav, SubtitleTrack(language="en", events=[]), empty, market, episode="ep001",
                             distributor="ReelCo", export_id="mask", out_dir=d / name, source_subs=subs)
        out[name] = d / name / "export.mp4"
    return out


def _frame(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time >= t - 1e-3:
                return f.to_ndarray(format="gray").astype(float)
    raise AssertionError(f"{path} has no frame at {t}s")


def _detail(region: np.ndarray) -> float:
    """Mean absolute Laplacian: high on glyph edges, near zero on a blur."""
    lap = -4 * region[1:-1, 1:-1] + region[:-2, 1:-1] + region[2:, 1:-1] + region[1:-1, :-2] + region[1:-1, 2:]
    return float(np.abs(lap).mean())


def _band_region(img: np.ndarray) -> np.ndarray:
    x, y, w, h = _ref_band()
    k = img.shape[1] / 720  # the 720x1280 source fills the 1080x1920 frame
    return img[int(y * k) + 6:int((y + h) * k) - 6, int(x * k) + 6:int((x + w) * k) - 6]


def test_mask_blurs_the_band_only_while_text_shows(renders):
    on = 5.5  # cut time: "是我签的，有什么问题吗？" shows 4.75-7.04 (6.75-9.04 in the sample)
    masked, plain = _band_region(_frame(renders["masked"], on)), _band_region(_frame(renders["plain"], on))
    assert _detail(plain) > 3 * _detail(masked), (_detail(plain), _detail(masked))
    assert np.abs(masked - plain).mean() > 10
    off = 4.3  # between 3.85 (end of the second line, cut time) and 4.75 (start of the third)
    masked, plain = _band_region(_frame(renders["masked"], off)), _band_region(_frame(renders["plain"], off))
    assert np.abs(masked - plain).mean() < 2


# --------------------------------------------------------------------------- pure: two lines, static text, glyph masks


def test_two_stacked_lines_are_one_subtitle_and_side_by_side_texts_are_not():
    top, bottom = ss.Line(170, 520, 350, 565, "是我签的，", 0.99), ss.Line(140, 578, 380, 620, "有什么问题吗？", 0.98)
    (block,) = ss.blocks([bottom, top])
    assert block.text == "是我签的，\n有什么问题吗？" and (block.y0, block.y1) == (520, 620)
    far = ss.Line(140, 700, 380, 740, "别的", 0.9)  # a line's height below: another text
    assert len(ss.blocks([top, far])) == 2


def test_static_text_needs_one_text_in_one_place_for_long():
    logo = [(float(t), ss.Line(20, 30, 120, 62, "星光短剧", 1.0)) for t in range(0, 10, 2)]
    assert [ln.text for ln in ss.find_static(logo, OPTS, duration=60)] == ["星光短剧"]
    line = [(float(t), _line(760, "陆总，您找我？")) for t in (1, 2, 3)]  # a long dialogue line: 2 s
    assert ss.find_static(line, OPTS, duration=60) == []


def test_glyph_patch_keeps_strokes_and_takes_a_box_whole():
    rng = np.random.default_rng(1)
    img = rng.integers(60, 140, (120, 300)).astype(np.uint8)  # textured picture
    img[50:80, 60:240:12] = 250  # white vertical strokes
    ln = ss.Line(55, 48, 245, 82, "字", 1.0)
    p = ss.glyph_patch(img, ln)
    rows, cols = 50 - p.y0, np.arange(60, 240, 12) - p.x0
    assert p.mask[rows + 10, cols].all()  # every stroke is in the mask
    assert p.mask.mean() < 0.5  # but not the picture between them
    boxed = img.copy()
    boxed[40:90, 45:255] = 30  # a dark box behind the text
    boxed[50:80, 60:240:12] = 250
    assert ss.glyph_patch(boxed, ln).mask.all()
    assert ss.decode_mask(ss.encode_mask(p.mask)).tolist() == p.mask.tolist()


def test_band_in_output_follows_the_reframe():
    from locpipe.render.mask import band_in_output

    subs = _subs(band=(78, 1017, 542, 69))
    top, bottom = band_in_output(subs, _info(), 1080, 1920, "blur-pad")
    assert (round(top), round(bottom)) == (1526, 1629)  # 9:16 source: scaled by 1.5
    wide = SourceSubtitles(found=True, band=(700, 900, 520, 80), frame_width=1920, frame_height=1080, sample_fps=4)
    info = _info(width=1920, height=1080, display_width=1920, display_height=1080)
    top, bottom = band_in_output(wide, info, 1080, 1920, "blur-pad")  # fitted 1080x608 at y=656
    assert (round(top), round(bottom)) == (round(656 + 900 * 608 / 1080), round(656 + 980 * 608 / 1080))


def test_target_subtitle_goes_on_the_source_band_unless_fixed():
    from locpipe.render.mask import place_subtitles

    us = load_market(DEFAULT_CONFIG_DIR, "us")
    moved = place_subtitles(us, _subs(band=(78, 900, 542, 69)), _info())
    assert moved.config.subtitles.margin_bottom == 1920 - round((900 + 69) * 1.5)
    fixed = us.model_copy(update={"config": us.config.model_copy(update={
        "subtitles": us.config.subtitles.model_copy(update={"position": "fixed"})})})
    assert place_subtitles(fixed, _subs(), _info()) is fixed
    top = place_subtitles(us, _subs(band=(78, 60, 542, 40)), _info())  # a top band: kept inside the safe zone
    assert 1920 - top.config.subtitles.margin_bottom - 2 * 62 * 1.3 >= us.profile.safe_zone.y0


def _boxed_subs(share: float) -> SourceSubtitles:
    """Two lines whose glyph masks cover ``share`` of their boxes (a box style masks ~all)."""
    m = np.zeros((20, 100), bool)
    m[:, : round(100 * share)] = True
    ivs = [OnScreenText(start=a, end=b, text="字", box=(100, 1100, 520, 40), mask=ss.encode_mask(m))
           for a, b in ((1.0, 2.0), (3.0, 4.0))]
    return SourceSubtitles(found=True, band=(90, 1090, 540, 60), frame_width=720, frame_height=1280, sample_fps=4,
                           intervals=ivs)


def test_a_boxed_source_is_covered_by_the_target_subtitles_own_box():
    from locpipe.render import mask as rmask

    us = load_market(DEFAULT_CONFIG_DIR, "us")
    boxed, strokes = _boxed_subs(0.95), _boxed_subs(0.3)
    assert rmask.boxed(boxed) and not rmask.boxed(strokes)
    covered = rmask.place_subtitles(us, boxed, _info())
    style = covered.config.subtitles
    assert covered.config.source_subtitles.mask == "box" and style.box and style.box_opacity == 1.0
    x, y, w, h = rmask.cover_rect(boxed, _info())
    assert (x, w) == (0, 720) and y <= 1100 and y + h >= 1140 and y % 2 == 0 and h % 2 == 0  # a full-width strip
    # the target box's bottom (text bottom + padding) meets the cover's bottom in the 1080x1920 export
    assert abs(1920 - style.margin_bottom + round(style.size * rmask.BOX_PADDING) - (y + h) * 1.5) <= 1
    # the strip reaches up to a target line just above it (one bar), not to one the safe zone keeps far away
    near = rmask.cover_rect(boxed, _info(), (1500, 1600), (1080, 1920, "blur-pad"))
    assert near[1] <= 1000 and near[1] + near[3] == y + h
    assert rmask.cover_rect(boxed, _info(), (900, 1000), (1080, 1920, "blur-pad")) == (x, y, w, h)
    plain = rmask.place_subtitles(us, strokes, _info())
    assert plain.config.source_subtitles.mask == "fill" and not plain.config.subtitles.box
    asked = us.model_copy(update={"config": us.config.model_copy(update={
        "source_subtitles": us.config.source_subtitles.model_copy(update={"mask": "box"})})})
    assert rmask.place_subtitles(asked, strokes, _info()).config.source_subtitles.mask == "box"
    never = us.model_copy(update={"config": us.config.model_copy(update={
        "source_subtitles": us.config.source_subtitles.model_copy(update={"cover_boxed": False})})})
    assert rmask.place_subtitles(never, boxed, _info()).config.source_subtitles.mask == "fill"
    fill = graph.Fill((0, 1000, 720, 200), ((Path("/m/a.png"), ((1.0, 2.0),)),), ((1.0, 2.0),))
    head = graph.head_graph(_info(), boxed, "h", fill=fill, mask="box", cover=graph.Cover("#102030"))
    assert f"drawbox=x={x}:y={y}:w={w}:h={h}:color=0x102030@1:t=fill:enable='between(t," in head
    assert head.endswith("[h]") and "[fcov]" in head


def test_subtitle_band_option_and_series_setting():
    import argparse

    from locpipe.cli.options import parse_band
    from locpipe.config.models import SeriesSettings

    assert parse_band("0.78:0.88") == (0.78, 0.88)
    for bad in ("0.9:0.8", "78:88", "0.8", "a:b"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_band(bad)
    assert SeriesSettings.model_validate({"subtitle_band": "0.1:0.2"}).subtitle_band == (0.1, 0.2)
    with pytest.raises(ValueError):
        SeriesSettings.model_validate({"subtitle_band": [0.5, 0.4]})


def test_qc_says_when_no_subtitles_were_found_but_speech_was():
    from locpipe.artifacts import Cue, Transcript
    from locpipe.stages import qc

    heard = Transcript(language="zh", cues=[Cue(index=0, start=1, end=2, text="你好")], backend="x", model="y")
    none = SourceSubtitles(found=False, frame_width=720, frame_height=1280, sample_fps=4)
    check = qc.source_subs_check(none, heard)
    assert check.passed and check.value == "none found" and "--subtitle-band" in check.detail
    assert qc.source_subs_check(_subs(), heard).value == "found"


# --------------------------------------------------------------------------- the style corpus (real video)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> dict[str, sc.Clip]:
    """Every style burned once per session (with its clean reference)."""
    return {c.style.name: c for c in sc.make_corpus(tmp_path_factory.mktemp("style-corpus"))}


@pytest.fixture(scope="session")
def ocr_engine():
    return ss.SubtitleOCR(2)


@pytest.fixture(scope="session")
def read(corpus, ocr_engine) -> dict[str, SourceSubtitles]:
    return {name: ss.detect_source_subtitles(probe(c.burned), ocr=ocr_engine) for name, c in corpus.items()}


def test_corpus_covers_the_styles_of_the_issue():
    styles = sc.STYLES
    assert len(styles) >= 8
    sizes = [s.size for s in styles]
    assert min(sizes) <= 0.022 and max(sizes) >= 0.065
    assert {s.fps for s in styles} >= {24, 25, 30, 60}
    assert any(s.width > s.height for s in styles) and any(s.width >= 3840 for s in styles)
    assert any(s.top for s in styles) and any(s.two_lines for s in styles) and any(s.box for s in styles)
    assert any(s.outline == 0 and s.shadow == 0 and not s.box for s in styles)  # bare text
    assert any(s.shadow and not s.outline for s in styles)
    assert any(s.colour != "&H00FFFFFF" for s in styles)
    bottoms = [s.y for s in styles if not s.top]
    assert min(bottoms) <= 0.56 and max(bottoms) >= 0.92
    assert any(s.static for s in styles)


@pytest.mark.parametrize("name", [s.name for s in sc.STYLES])
def test_every_style_is_found_and_read_exactly(name, corpus, read):
    clip, got = corpus[name], read[name]
    assert got.found, name
    ref = "".join(c.text for c in clip.cues)
    hyp = ""
    for c in clip.cues:
        over = _overlapping(got.intervals, c.start, c.end)
        assert over, f"{name}: line {c.text!r} at {c.start}-{c.end} s not read"
        best = min(over, key=lambda iv: cer(c.text, iv.text.replace("\n", "")))
        hyp += best.text.replace("\n", "")
        mid = (c.start + c.end) / 2
        assert best.start <= mid <= best.end and best.box and best.mask
    assert cer(ref, hyp) <= 0.01, (name, ref, hyp)
    assert len(got.intervals) == len(clip.cues), [iv.text for iv in got.intervals]
    assert sorted(s.text for s in got.static) == sorted(clip.static_texts)


def test_operator_band_reads_without_discovery(corpus, ocr_engine):
    clip = corpus["plain-small"]
    band = (clip.style.y - 0.06, clip.style.y + 0.01)
    got = ss.detect_source_subtitles(probe(clip.burned), ss.SourceSubsOptions(band_override=band), ocr=ocr_engine)
    assert got.found and got.band_given
    assert [iv.text for iv in got.intervals] == [c.text for c in clip.cues]


@pytest.mark.parametrize("name,static", [("plain-small", False), ("box-bottom-logo", True),
                                         ("yellow-outline-2line", False)])
def test_fill_leaves_nothing_readable_and_beats_the_blur_box(name, static, corpus, read, ocr_engine, tmp_path):
    from locpipe.media.frames import luma_at

    clip, subs = corpus[name], read[name]
    info = probe(clip.burned)
    filled = sc.masked_copy(info, subs, "fill", tmp_path / "fill.mp4", static=static)
    blurred = sc.masked_copy(info, subs, "blur", tmp_path / "blur.mp4")
    frames_ = luma_at(filled, sc.cue_times(clip), short_side=540)
    assert len(frames_) == len(clip.cues)
    keep = [] if static else clip.static_texts
    assert ss.readable_leaks(frames_, ocr_engine, static=keep) == []
    untouched = luma_at(clip.burned, sc.cue_times(clip), short_side=540)
    assert len(ss.readable_leaks(untouched, ocr_engine, static=keep)) >= len(clip.cues)  # the check can fail
    fill_psnr, fill_ssim = sc.band_figures(clip, subs, filled)
    blur_psnr, blur_ssim = sc.band_figures(clip, subs, blurred)
    assert fill_psnr > blur_psnr + 2 and fill_ssim > blur_ssim, (fill_psnr, blur_psnr, fill_ssim, blur_ssim)


def test_export_puts_english_on_the_band_and_qc_reads_the_export(corpus, read, ocr_engine, tmp_path):
    """A real export: the target line sits where the Chinese was, QC's export OCR passes it,
    and the same check fails the unmasked source (what an undetected style would ship)."""
    from locpipe.artifacts import Cue, SubtitleEvent, Transcript
    from locpipe.render.mask import place_subtitles
    from locpipe.stages import qc

    clip, subs = corpus["plain-small"], read["plain-small"]
    info = probe(clip.burned)
    wav = tmp_path / "mix.wav"
    ffmpeg("-i", str(clip.burned), "-vn", "-ac", "2", "-ar", "48000", str(wav))
    us = load_market(DEFAULT_CONFIG_DIR, "us")
    market = place_subtitles(us, subs, info)
    track = SubtitleTrack(language="en", events=[
        SubtitleEvent(start=c.start, end=c.end, lines=["Mr. Lu, you wanted me?"], cue_index=i)
        for i, c in enumerate(clip.cues)])
    (tmp_path / "track").mkdir()
    render.render_export(info, wav, track, tmp_path / "track", market, episode="ep", distributor="d", export_id="x",
                         out_dir=tmp_path / "out", source_subs=subs)
    export = tmp_path / "out" / "export.mp4"
    band_bottom = (subs.band[1] + subs.band[3]) * 1920 / 1280
    assert abs((1920 - market.config.subtitles.margin_bottom) - band_bottom) < 8
    transcript = Transcript(language="zh", cues=[Cue(index=i, start=c.start, end=c.end, text=c.text)
                                                 for i, c in enumerate(clip.cues)], backend="ocr", model="")
    check = qc.source_text_check(export, us, transcript, subs, ocr_engine)
    assert check.passed, check.detail
    leaked = qc.source_text_check(clip.burned, us, transcript, subs, ocr_engine)
    assert not leaked.passed and leaked.value == len(clip.cues)
    jp = load_market(DEFAULT_CONFIG_DIR, "jp")
    assert qc.source_text_check(clip.burned, jp, transcript, subs, ocr_engine) is None  # CJK market


def test_fill_graph_removes_each_line_only_while_it_shows():
    fill = graph.Fill(rect=(60, 900, 600, 120), passes=((Path("/m/a.png"), ((1.0, 2.0),)), (Path("/m/b.png"), ())),
                      windows=None, work=(300, 60), alpha=Path("/m/alpha.png"))
    g = graph.fill_graph(fill, "src", "out")
    assert g.startswith("[src]split=2[fsrc][fband];[fband]crop=600:120:60:900,scale=300:60:flags=area,")
    assert "removelogo=filename='/m/a.png':enable='between(t,1.000,2.000)',removelogo=filename='/m/b.png'," in g
    assert ",scale=600:120:flags=bicubic," in g and "alphamerge=shortest=1" in g
    assert g.endswith("[fsrc][ffill]overlay=60:900[out]")  # a static pass: always on
    timed = graph.fill_graph(graph.Fill((0, 0, 10, 10), ((Path("a"), ((1.0, 2.0),)),), ((1.0, 2.0),)), "s", "o")
    assert timed.endswith("overlay=0:0:enable='between(t,1.000,2.000)'[o]")


def test_the_exports_own_watermark_is_not_a_source_text_leak():
    """A Chinese file name shows in the visible mark; OCR reads it with spaces lost or cut short."""
    from locpipe.stages.qc import is_own_text

    mark = "internal us 第2集 yellow f71a565d73"
    assert is_own_text("nternalus第2集yellowf71a565d73", mark) and is_own_text("第2集yellow", mark)
    assert not is_own_text("是我签的，有什么问题吗？", mark) and not is_own_text("第2集", "")
