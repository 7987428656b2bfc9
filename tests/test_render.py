"""Render stage: pure layout/graph functions, then real ffmpeg renders of synthetic clips.

The real renders are 3-4 s clips upscaled to 1080x1920 (a few seconds each). Set
``LOCPIPE_RENDER_CHECK=/some/dir`` to keep one frame grab per market there for eyeballing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import av
import numpy as np
import pysubs2
import pytest
from conftest import ffmpeg, make_clip

from locpipe.artifacts import SubtitleEvent, SubtitleTrack
from locpipe.config import DEFAULT_CONFIG_DIR, Market, SubtitleStyle, load_market
from locpipe.media import ass
from locpipe.media.ffmpeg import escape_filter_value, run_ffmpeg
from locpipe.media.probe import probe
from locpipe.media.subtitles import write_ass
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.render import visible as wm

HOSTILE = "{\\fs200\\c&H0000FF&}HACK\\N' ; [x] : ,"
SOURCE_SECONDS = 3.5


@pytest.fixture(scope="module")
def markets() -> dict[str, Market]:
    return {code: load_market(DEFAULT_CONFIG_DIR, code) for code in ("us", "us-social")}


def _track() -> SubtitleTrack:
    return SubtitleTrack(language="en", events=[
        SubtitleEvent(start=0.0, end=1.6, lines=["Where were you last night?", "I waited for hours."], cue_index=0),
        SubtitleEvent(start=1.9, end=3.2, lines=[HOSTILE], cue_index=1),
    ])


# --------------------------------------------------------------------------- ASS text safety


def test_escape_text_neutralizes_every_ass_construct():
    out = ass.escape_text(HOSTILE + "\nnew\r\nline\x00\x07\u2028end")
    assert "{" not in out and "}" not in out
    assert not re.search(r"\\[^\u2060]", out), "a backslash could start an escape"
    assert "\n" not in out and "\r" not in out and "\x00" not in out and "\u2028" not in out
    assert "HACK" in out and "' ; [x] : ," in out and "new line" in out.replace("  ", " ")


def test_escape_keeps_bidi_marks_and_rtl_lines_get_rlm():
    line = "\u202bمرحبا\u202c"
    assert ass.escape_text(line) == line
    text = ass.event_text([line, "Lily 2024!"], rtl=True)
    assert text.split(r"\N")[1].startswith(ass.RLM) and text.count(r"\N") == 1


def test_hostile_text_stays_literal_in_the_ass_file(markets, tmp_path):
    m = markets["us"]
    doc = ass.build_ass(_track(), m.config.subtitles, m.profile)
    path = write_ass(doc, tmp_path / "x.ass")
    dialogue = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.startswith("Dialogue:")]
    assert len(dialogue) == 2  # one line per event: nothing broke out of the Text field
    hostile = dialogue[1].split(",", 9)[9]
    assert "{" not in hostile and "}" not in hostile and r"\N" not in hostile
    assert dialogue[0].split(",", 9)[9] == r"Where were you last night?\NI waited for hours."


def test_style_box_rtl_and_resolution(markets):
    social = markets["us-social"]
    doc = ass.build_ass(SubtitleTrack(language="ar", events=[]), social.config.subtitles, social.profile)
    s = doc.styles[ass.SUBTITLE_STYLE]
    assert (doc.info["PlayResX"], doc.info["PlayResY"]) == ("1080", "1920")
    assert s.borderstyle == 4 and s.outline >= 10 and s.bold and s.encoding == -1
    assert s.backcolor.a == ass.ass_alpha(social.config.subtitles.box_opacity) and s.outlinecolor.a == 255
    assert s.alignment == 2 and s.marginv == 700


def test_margins_are_clamped_into_the_safe_zone(markets):
    p = markets["us-social"].profile  # safe zone x 65-1015, y 269-1248
    m = ass.subtitle_margins(SubtitleStyle(margin_bottom=100, margin_sides=10, outline=4, shadow=1), p)
    assert p.height - m.vertical + 4 + 1 <= p.safe_zone.y1
    assert m.left >= p.safe_zone.x0 + 4 and p.width - m.right <= p.safe_zone.x1 - 4
    app = markets["us"]
    assert ass.subtitle_margins(app.config.subtitles, app.profile) == ass.Margins(90, 90, 230)


# --------------------------------------------------------------------------- watermark positions


def _plan(market: Market, export_id: str, duration: float = 60.0):
    return wm.plan_visible_watermark(market, duration=duration, distributor="ReelCo", episode="ep001",
                                     export_id=export_id)


def test_watermark_text_and_timing(markets):
    mark = _plan(markets["us-social"], "x7f3a9c21", duration=10.0)
    assert mark.text == "ReelCo us-social ep001 x7f3a9c21"
    assert [(s, e) for s, e, _ in mark.placements] == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert mark.layer().overlays[0].text == mark.text and mark.opacity == 0.35


def test_watermark_positions_are_keyed_by_export_id(markets):
    for m in markets.values():
        a, b, c = _plan(m, "export-0001"), _plan(m, "export-0001"), _plan(m, "export-0002")
        assert a.placements == b.placements
        assert [p[2] for p in a.placements] != [p[2] for p in c.placements]
        assert len({(box.x, box.y) for _, _, box in a.placements}) > len(a.placements) // 2  # it moves


@pytest.mark.parametrize("code", ["us", "us-social"])
def test_watermark_always_in_safe_zone_and_out_of_subtitle_band(markets, code):
    m = markets[code]
    zone = m.profile.safe_zone
    top, bottom = ass.subtitle_band(m.config.subtitles, m.profile, m.config.subtitle_rules.max_lines)
    assert top < m.profile.height - m.config.subtitles.margin_bottom < bottom
    for i in range(40):
        for _, _, box in _plan(m, f"id-{i}", duration=300.0).placements:
            assert zone.x0 <= box.x and box.x1 <= zone.x1 and zone.y0 <= box.y and box.y1 <= zone.y1
            assert box.y1 <= top or box.y >= bottom


def test_long_watermark_text_shrinks_to_fit(markets):
    m = markets["us"]
    long = m.model_copy(update={"config": m.config.model_copy(update={
        "watermark": m.config.watermark.model_copy(update={"template": "{distributor} " * 6 + "{export_id}"})})})
    mark = _plan(long, "0123456789abcdef0123456789abcdef")
    assert mark.size < m.config.watermark.size and mark.box.w <= m.profile.safe_zone.x1 - m.profile.safe_zone.x0


def test_a_250_byte_episode_name_is_shortened_in_the_mark_not_refused(markets):
    """An 83-character Chinese file name is a valid episode name; the mark carries its start."""
    name = "霸道总裁的替身新娘第三集" * 7
    for m in markets.values():
        mark = wm.plan_visible_watermark(m, duration=10.0, distributor="ReelCo", episode=name, export_id="x1")
        shown = name if m.config.language == "ja" else wm.episode_label(name, m.config.language)
        assert shown[:10] in mark.text and shown not in mark.text and "…" in mark.text
        assert mark.box.w <= m.profile.safe_zone.x1 - m.profile.safe_zone.x0


def test_a_chinese_episode_name_is_romanized_for_markets_that_do_not_read_it(markets):
    """An English export must not show a Chinese file name in its picture; a Japanese one may."""
    assert wm.episode_label("霸道总裁_第3集【完】", "en") == "BaDaoZongCai_Di3Ji[Wan]"
    assert wm.episode_label("EP05-重生", "pt-BR") == "EP05-ChongSheng"
    assert wm.episode_label("霸道总裁_第3集", "ja") == "霸道总裁_第3集"
    kana = wm.episode_label("ドラマ第1話", "en")  # no pinyin for kana: a short hash tells episodes apart
    assert kana.startswith("ep") and kana.isascii() and kana != wm.episode_label("ドラマ第2話", "en")
    for code, m in markets.items():
        mark = wm.plan_visible_watermark(m, duration=10.0, distributor="ReelCo", episode="霸道总裁第3集",
                                         export_id="x1")
        han = any("\u4e00" <= ch <= "\u9fff" for ch in mark.text)
        assert han == (m.config.language == "ja"), (code, mark.text)
        if m.config.language != "ja":
            assert "BaDaoZongCaiDi3Ji" in mark.text


def test_rendered_watermark_ink_stays_inside_the_estimated_box(markets, tmp_path):
    """The box is an estimate; check it against libass for a wide, capital-heavy text."""
    m = markets["us"]
    text = "WMQ@ DISTRIBUTOR-MW 発行 0123456789"
    box = wm.text_box(text, 40)
    mark = wm.VisibleWatermark(text=text, size=40, opacity=1.0, box=box,
                               placements=((0.0, 1.0, wm.Box(100, 300, box.w, box.h)),))
    doc = ass.build_ass(SubtitleTrack(language="en", events=[]), m.config.subtitles, m.profile, mark.layer())
    path = write_ass(doc, tmp_path / "wm.ass")
    png = tmp_path / "wm.png"
    run_ffmpeg(["-f", "lavfi", "-i", "color=c=black:s=1080x1920:d=0.5", "-vf", f"ass={escape_filter_value(str(path))}",
                "-frames:v", "1", str(png)], env=_font_env())
    ink = np.argwhere(_png_gray(png) > 8)
    assert len(ink) > 500
    (y0, x0), (y1, x1) = ink.min(axis=0), ink.max(axis=0)
    assert 100 <= x0 and x1 < 100 + box.w and 300 <= y0 and y1 < 300 + box.h, (x0, y0, x1, y1, box)


# --------------------------------------------------------------------------- filtergraph


def test_rate_policy_and_gop(markets):
    p = markets["us"].profile
    assert graph.output_fps(p, 29.97) is None and graph.output_fps(p, 23.976) is None
    assert graph.output_fps(p, 25.0) is None and graph.output_fps(p, 60.0) == 30.0
    assert graph.output_fps(p, 29.5) == 30.0
    assert graph.output_fps(p.model_copy(update={"fps_policy": "conform"}), 25.0) == 30.0
    assert [graph.gop_frames(f) for f in (30, 29.97, 25, 24)] == [15, 15, 13, 12]


def test_reframe_graphs(markets):
    app, social = markets["us"].profile, markets["us-social"].profile
    crop = graph.reframe_graph(social, 640, 360, "in", "out")
    assert "scale=3414:1920:" in crop and "crop=1080:1920:1167:0" in crop
    assert "split" not in graph.reframe_graph(app, 360, 640, "in", "out")  # 9:16 fills: no padding needed
    blur = graph.reframe_graph(app, 640, 360, "in", "out")
    assert "split=2" in blur and "boxblur" in blur and "overlay=0:656" in blur and "scale=1080:608:" in blur
    box = graph.reframe_graph(app.model_copy(update={"reframe": "letterbox"}), 640, 360, "in", "out")
    assert "scale=1080:608:" in box and "pad=1080:1920:0:656:color=black" in box
    assert all(g.count("setsar=1") >= 1 for g in (crop, blur, box))


def test_colour_matrix_of_untagged_sources():
    assert graph.input_matrix(None, 1080, 1920) == "bt709"
    assert graph.input_matrix(None, 640, 480) == "smpte170m"
    assert graph.input_matrix(5, 1080, 1920) == "bt470bg"


def test_ffmpeg_args_keep_video_length_and_delivery_flags(markets, tmp_path):
    from locpipe.artifacts import MediaInfo

    src = MediaInfo(path="/x/ep.mp4", sha256="0", size=1, duration=61.25, width=720, height=1280,
                    display_width=720, display_height=1280, fps=29.97)
    args = graph.ffmpeg_args(src, tmp_path / "mix.wav", tmp_path / "a b'c.ass", markets["us"].profile,
                              tmp_path / "out.mp4")
    joined = " ".join(args)
    assert "-shortest" not in args and args[args.index("-t") + 1] == "61.250"
    fgraph = args[args.index("-filter_complex") + 1]
    assert "apad" in fgraph and "aresample=48000" in fgraph and "fps=" not in fgraph
    for flag in ("-movflags +faststart", "-profile:v high", "-g 15 -keyint_min 15 -sc_threshold 0 -flags +cgop",
                 "-maxrate 8M -bufsize 16M", "-crf 20", "-b:a 160k -ar 48000 -ac 2", "-color_trc bt709"):
        assert flag in joined


# --------------------------------------------------------------------------- real renders


@pytest.fixture(scope="module")
def rendered(markets, tmp_path_factory):
    """Each market rendered with and without subtitles (same export id, so the watermark is
    identical and a frame difference shows the subtitles alone)."""
    d = tmp_path_factory.mktemp("render")
    sources = {"us": make_clip(d / "portrait.mp4", seconds=SOURCE_SECONDS, size="360x640"),
               "us-social": make_clip(d / "landscape.mp4", seconds=SOURCE_SECONDS, size="640x360", rate=25)}
    # the mix is shorter than the picture for one market and longer for the other
    wavs = {"us": d / "short.wav", "us-social": d / "long.wav"}
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2", "-ac", "1", str(wavs["us"]))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=5", "-ac", "2",
           str(wavs["us-social"]))
    track_dir = d / "track"
    track_dir.mkdir()
    (track_dir / "subtitles.srt").write_text("1\n00:00:00,000 --> 00:00:01,600\nWhere were you?\n", encoding="utf-8")
    (track_dir / "subtitles.vtt").write_text("WEBVTT\n\n00:00.000 --> 00:01.600\nWhere were you?\n", encoding="utf-8")
    empty_dir = d / "no-track"
    empty_dir.mkdir()
    out = {}
    for code, m in markets.items():
        info = probe(sources[code])
        for subs in (True, False):
            # an output folder full of filter-syntax characters: the ASS path must be escaped
            out_dir = d / f"{code}-{'subs' if subs else 'plain'}" / ("we'ird [dir], x;y:z=%" if not subs else "")
            track = _track() if subs else SubtitleTrack(language="en", events=[])
            result = render.render_export(info, wavs[code], track, track_dir if subs else empty_dir, m,
                                          episode="ep001", distributor="ReelCo", export_id="x7f3a9c21",
                                          out_dir=out_dir)
            out[code, subs] = (info, out_dir, result)
    return out


@pytest.mark.parametrize("code", ["us", "us-social"])
def test_export_format(rendered, markets, code):
    info, out_dir, result = rendered[code, True]
    video = out_dir / result.video
    assert result.watermark_text == f"ReelCo {code} ep001 x7f3a9c21" and result.ffmpeg_seconds > 0
    assert (out_dir / result.srt).read_text().startswith("1\n") and (out_dir / result.vtt).exists()
    assert not list(out_dir.glob(".*partial"))
    with av.open(str(video)) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert (v.codec_context.width, v.codec_context.height) == (1080, 1920)
        assert v.codec_context.name == "h264" and v.codec_context.profile == "High"
        assert v.codec_context.pix_fmt == "yuv420p"
        assert (v.codec_context.color_primaries, v.codec_context.color_trc, v.codec_context.colorspace) == (1, 1, 1)
        assert a.codec_context.name == "aac" and a.codec_context.sample_rate == 48000 and a.codec_context.channels == 2
        # the audio was padded (us) or trimmed (us-social) to the picture
        assert abs(float(v.duration * v.time_base) - SOURCE_SECONDS) <= 0.1
        assert abs(float(a.duration * a.time_base) - SOURCE_SECONDS) <= 0.1
        fps = float(v.average_rate)
        keyframes = [i for i, p in enumerate(c.demux(v)) if p.is_keyframe]
    gop = graph.gop_frames(fps)
    assert keyframes[:4] == [0, gop, 2 * gop, 3 * gop]
    assert abs(probe(video).duration - info.duration) <= 0.1
    assert _top_level_atoms(video).index("moov") < _top_level_atoms(video).index("mdat")


def test_export_without_sidecars_says_so(rendered):
    _, out_dir, result = rendered["us", False]
    assert result.srt == "" and result.vtt == "" and (out_dir / "export.mp4").exists()
    assert "we'ird" in str(out_dir)


@pytest.mark.parametrize("code", ["us", "us-social"])
def test_subtitles_land_in_the_safe_zone(rendered, markets, code):
    m = markets[code]
    _, with_dir, _ = rendered[code, True]
    _, plain_dir, _ = rendered[code, False]
    zone, style = m.profile.safe_zone, m.config.subtitles
    top, bottom = ass.subtitle_band(style, m.profile, m.config.subtitle_rules.max_lines)
    frame = _frame(with_dir / "export.mp4", 1.0)
    ys, xs = _changed(frame, _frame(plain_dir / "export.mp4", 1.0))
    assert len(ys) > 2000, "no subtitle pixels found"
    assert top <= ys.min() and ys.max() <= min(bottom, zone.y1)
    assert zone.x0 <= xs.min() and xs.max() <= zone.x1
    assert ys.max() - ys.min() > 1.5 * style.size  # two lines
    _save_check(with_dir / "export.mp4", code)


@pytest.mark.parametrize("code", ["us", "us-social"])
def test_hostile_subtitle_renders_literally_in_style(rendered, markets, code):
    """``{\\fs200\\c&H0000FF&}`` would make 200 px red text on one line; escaped, it is
    one line of normal-size white text that includes the braces."""
    style = markets[code].config.subtitles
    _, with_dir, _ = rendered[code, True]
    _, plain_dir, _ = rendered[code, False]
    frame = _frame(with_dir / "export.mp4", 2.5)
    ys, xs = _changed(frame, _frame(plain_dir / "export.mp4", 2.5))
    assert len(ys) > 1000
    text = frame[ys, xs]
    white = (text.min(axis=1) > 180).sum()
    red = ((text[:, 0] > 180) & (text[:, 1] < 90) & (text[:, 2] < 90)).sum()
    assert white > 300 and red < white / 20
    glyph_rows = ys[text.min(axis=1) > 180]
    assert glyph_rows.max() - glyph_rows.min() < 1.3 * style.size  # one line, normal size
    assert xs.max() - xs.min() > 12 * style.size * 0.5  # the whole literal string is drawn


def test_scripts_render_with_real_fonts(tmp_path):
    """libass resolves Regular/Bold (not Thin) of Latin and the variable CJK font, and finds
    glyphs for Thai and Arabic (tofu would log 'failed to find any fallback')."""
    lines = {"Noto Sans": "Hello, world!", "Noto Sans CJK JP": "昨夜はどこにいたの？", "Noto Sans CJK SC": "你好吗？",
             "Noto Sans Thai": "เมื่อคืนคุณไปไหนมา?", "Noto Sans Arabic": "\u200fأين كنت الليلة الماضية؟"}
    doc = ass.build_ass(SubtitleTrack(language="en", events=[]), SubtitleStyle(), _profile())
    for k, (font, text, bold) in enumerate((f, t, b) for f, t in lines.items() for b in (False, True)):
        margins = ass.Margins(10, 10, 100 + 110 * k)
        doc.styles[f"s{k}"] = ass.subtitle_ass_style(SubtitleStyle(font=font, bold=bold), margins, rtl="Arabic" in font)
        doc.events.append(pysubs2.SSAEvent(start=0, end=1000, style=f"s{k}", text=ass.escape_text(text)))
    path = write_ass(doc, tmp_path / "fonts.ass")
    png = tmp_path / "fonts.png"
    log = run_ffmpeg(["-loglevel", "verbose", "-f", "lavfi", "-i", "color=c=0x406080:s=1080x1920:d=0.5",
                      "-vf", f"ass={escape_filter_value(str(path))}", "-frames:v", "1", str(png)], env=_font_env())
    picks = re.findall(r"fontselect: \((.+?), (\d+), \d\) -> \S+, \d+, (\S+)", log)
    assert picks and "failed to find any fallback" not in log
    for family, weight, face in picks:
        assert "Thin" not in face and "Light" not in face
        assert ("Bold" in face) == (weight == "700"), (family, weight, face)
    assert {f for f, _, _ in picks} >= set(lines)
    if os.environ.get("LOCPIPE_RENDER_CHECK"):
        shutil.copy(png, Path(os.environ["LOCPIPE_RENDER_CHECK"]) / "fonts.png")


# --------------------------------------------------------------------------- helpers


def _profile():
    return load_market(DEFAULT_CONFIG_DIR, "us").profile


def _font_env() -> dict[str, str]:
    from locpipe.assets import font_env

    return font_env()


def _frame(path: Path, t: float) -> np.ndarray:
    """RGB frame at (or just after) ``t`` seconds."""
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            if f.time >= t - 1e-3:
                return f.to_ndarray(format="rgb24")
    raise AssertionError(f"{path} has no frame at {t}s")


def _changed(a: np.ndarray, b: np.ndarray, threshold: int = 90) -> tuple[np.ndarray, np.ndarray]:
    """Pixels that differ clearly between two renders of the same frame (encoder noise is
    far below the threshold)."""
    diff = np.abs(a.astype(int) - b.astype(int)).max(axis=2)
    return np.nonzero(diff > threshold)


def _png_gray(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="gray")


def _top_level_atoms(path: Path) -> list[str]:
    data = path.read_bytes()
    atoms, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big")
        atoms.append(data[pos + 4:pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8:pos + 16], "big")
        if size < 8:
            break
        pos += size
    return atoms


def _save_check(video: Path, code: str) -> None:
    folder = os.environ.get("LOCPIPE_RENDER_CHECK")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        ffmpeg("-ss", "1.0", "-i", str(video), "-frames:v", "1", str(Path(folder) / f"{code}.png"))
