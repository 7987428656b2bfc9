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
from conftest import SAMPLE_SCRIPT, cut_sample, ffmpeg, make_clip

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
    out = ss.readings_to_intervals(readings, OPTS, duration=2.2)
    assert [(iv.start, iv.end, iv.text) for iv in out] == [(0.125, 1.125, "你好吗"), (1.625, 2.2, "再见")]
    assert out[0].confidence == pytest.approx(0.925)
    # VFR: boundaries sit halfway to the neighbouring samples, whatever their spacing
    vfr = ss.readings_to_intervals([r(0.0, ""), r(0.4, "好", 1.0), r(0.5, "")], OPTS, duration=1.0)
    assert (vfr[0].start, vfr[0].end) == (0.2, 0.45)


def _line(y: float, text: str, x0: float = 150, x1: float = 390) -> ss.Line:
    return ss.Line(x0, y, x1, y + 36, text, 0.95)


def test_band_needs_recurring_changing_centred_cjk():
    subs = [(1.0, _line(760, "陆总，您找我？")), (2.0, _line(762, "陆总，您找我？")), (3.0, _line(758, "是我签的"))]
    assert ss.find_band(subs, OPTS) == (758, 798)
    sign = [(t, _line(700, "北京烤鸭")) for t in (1.0, 2.0, 3.0, 4.0)]  # scene text / logo: never changes
    assert ss.find_band(sign, OPTS) is None
    assert ss.find_band(subs[:2], OPTS) is None  # too few samples
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
