"""Source subtitles: find the Chinese subtitles burned into an episode, where and when.

Most micro-dramas arrive hard-subbed, each studio in its own style (2-7 % of the frame
high, white or yellow or pink, outlined, shadowed, on a translucent box or bare, one or two
lines, anywhere from the middle to the bottom or at the top). The recognized text is the
exact script (fused with ASR later); the glyph masks tell render what to remove.

How, and why it is cheap enough (about a tenth of real time on 2 cores: 0.19 CPU-s per
second of 720x1280 video, a third of it decoding):

1. Frames are sampled at ``sample_fps`` (default 4) with PyAV, decoding reference frames
   only, scaled so the short side is ``work_short_side`` pixels (4K costs what 720p costs),
   turned to the display orientation so every coordinate matches what render decodes.
   Decoding runs a few samples ahead in a thread (``frames.read_ahead``) while OCR reads.
2. *Discovery* OCRs whole sampled frames once per ``discovery_every`` seconds until one
   horizontal band holds centred CJK text blocks (a block: the lines of one subtitle, one or
   two) in ``min_hits`` samples with at least ``min_distinct`` different texts. Text that
   stays put with one content for ``static_span`` seconds (a channel logo, the series title,
   "第3集") is *static*: reported apart, never dialogue, masked only where a market asks.
   ``--subtitle-band TOP:BOTTOM`` (``band_override``) skips discovery.
3. *Tracking* looks at that band only (with a line's height of room above and below for a
   second line), from the first sample (discovery kept its frames, so nothing is decoded
   twice). Full OCR runs only when the band's content changed: a shown line keeps its glyph
   edges while the picture behind it moves, so comparing those edges with the last reading
   decides "same line" for the price of a numpy subtraction. An empty band is checked with
   text detection alone, every other sample.
4. Each OCR reading also yields the line's glyph mask (fill, outline and shadow: the pixels
   far from the local background; a translucent box whole), which render dilates and fills
   from the surrounding picture, so only the glyphs are replaced, not a rectangle.
5. Readings become intervals: consecutive samples with similar text (OCR jitter) are one
   line; each interval reaches halfway to the neighbouring samples.

Known limits: one dialogue band per episode; a second line joining a line already shown is
only seen at the next change; subtitles that fade in start at their first readable sample.
"""

from __future__ import annotations

import base64
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from locpipe.artifacts import MediaInfo, OnScreenText, SourceSubtitles, StaticText
from locpipe.backends.ocr.rapidocr import BACKEND, MODEL, Line, SubtitleOCR
from locpipe.media import frames
from locpipe.media.frames import Sample, iter_samples
from locpipe.metrics import edit_distance

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class SourceSubsOptions(BaseModel):
    """Knobs of the detector; part of the stage's cache key (except ``threads``)."""

    sample_fps: float = 4.0
    #: the sampled picture is scaled so its short side is this long (never upscaled)
    work_short_side: int = 540
    #: full-frame OCR period while looking for the band ...
    discovery_every: float = 1.0
    #: ... and after this many seconds without a band (an episode without subtitles must
    #: not cost a full OCR every second)
    discovery_slow_after: float = 30.0
    discovery_slow_every: float = 4.0
    min_hits: int = 3
    min_distinct: int = 2
    #: a subtitle line's centre lies within this fraction of the width from the centre
    center_tolerance: float = 0.12
    #: recognition score below which a reading is ignored
    min_score: float = 0.6
    #: normalized edit distance under which two readings are the same line
    same_text: float = 0.34
    #: fraction of the last reading's glyph edges that must be unchanged for "same line"
    same_glyphs: float = 0.6
    #: unchanged text in one place for this long (or most of a shorter clip) is static
    static_span: float = 8.0
    #: padding of the reported band, in source pixels (outline, shadow)
    pad: int = 6
    #: the operator's band (top, bottom) as fractions of the height: no discovery
    band_override: tuple[float, float] | None = None
    threads: int = 2


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class Patch:
    """A glyph mask in work pixels: ``mask`` covers rows y0.. and columns x0.. ."""

    x0: int
    y0: int
    mask: np.ndarray

    @property
    def x1(self) -> int:
        return self.x0 + self.mask.shape[1]

    @property
    def y1(self) -> int:
        return self.y0 + self.mask.shape[0]


@dataclass(frozen=True)
class Reading:
    """What the band showed at one sample time: '' when no subtitle."""

    t: float
    text: str
    score: float = 0.0
    patch: Patch | None = None


@dataclass(frozen=True)
class Block:
    """One subtitle on screen: its line(s), top to bottom, in work pixels."""

    lines: tuple[Line, ...]

    @property
    def y0(self) -> float:
        return min(ln.y0 for ln in self.lines)

    @property
    def y1(self) -> float:
        return max(ln.y1 for ln in self.lines)

    @property
    def text(self) -> str:
        return join_lines(list(self.lines))

    @property
    def line_height(self) -> float:
        return float(np.median([ln.height for ln in self.lines]))


def has_cjk(text: str) -> bool:
    return bool(_CJK.search(text))


def text_distance(a: str, b: str) -> float:
    """Normalized edit distance of two readings (0 same, 1 unrelated), ignoring
    punctuation and spaces: OCR jitter mostly lives in commas and look-alike marks."""
    ca = [ch for ch in a if ch.isalnum()]
    cb = [ch for ch in b if ch.isalnum()]
    if not ca and not cb:
        return 0.0
    return edit_distance(ca, cb) / max(len(ca), len(cb))


def is_cjk_line(line: Line, opts: SourceSubsOptions) -> bool:
    return line.score >= opts.min_score and has_cjk(line.text)


def is_subtitle_line(line: Line, width: float, opts: SourceSubsOptions) -> bool:
    """Centred, CJK, and read with confidence: what a burned subtitle looks like."""
    centred = abs((line.x0 + line.x1) / 2 - width / 2) <= opts.center_tolerance * width
    return centred and is_cjk_line(line, opts)


def join_lines(lines: list[Line]) -> str:
    return "\n".join(ln.text for ln in sorted(lines, key=lambda ln: ln.cy))


def blocks(lines: list[Line]) -> list[Block]:
    """Lines stacked closer than a line's height, overlapping sideways, are one subtitle."""
    out: list[list[Line]] = []
    for ln in sorted(lines, key=lambda ln: ln.y0):
        last = out[-1][-1] if out else None
        if last is not None and ln.y0 - last.y1 < 0.8 * min(ln.height, last.height) \
                and min(ln.x1, last.x1) > max(ln.x0, last.x0):
            out[-1].append(ln)
        else:
            out.append([ln])
    return [Block(tuple(b)) for b in out]


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return min(a1, b1) - max(a0, b0)


def distinct_texts(texts: list[str], same: float) -> list[str]:
    kept: list[str] = []
    for t in texts:
        if all(text_distance(t, k) > same for k in kept):
            kept.append(t)
    return kept


def find_band(hits: list[tuple[float, Block]], opts: SourceSubsOptions) -> tuple[float, float, float] | None:
    """(top, bottom, line height) in work pixels of the band where subtitles recur, or None.

    A band needs centred blocks in ``min_hits`` different samples, each overlapping the
    anchor's rows by half a line, showing at least ``min_distinct`` different texts (a sign,
    a logo or a title repeats; it does not change). Of several such groups the one seen in
    most samples wins.
    """
    best: list[tuple[float, Block]] = []
    for _, anchor in hits:
        near = [(t, b) for t, b in hits
                if _overlap(anchor.y0, anchor.y1, b.y0, b.y1) >= 0.5 * min(anchor.line_height, b.line_height)]
        times = {t for t, _ in near}
        if len(times) < opts.min_hits or len(times) <= len({t for t, _ in best}):
            continue
        if len(distinct_texts([b.text for _, b in near], opts.same_text)) >= opts.min_distinct:
            best = near
    if not best:
        return None
    return (min(b.y0 for _, b in best), max(b.y1 for _, b in best),
            float(np.median([ln.height for _, b in best for ln in b.lines])))


def find_static(seen: list[tuple[float, Line]], opts: SourceSubsOptions, *, duration: float) -> list[Line]:
    """Lines that keep one text in one place for ``static_span`` seconds (or 60 % of a
    shorter clip): logos, titles, episode numbers. One representative per place."""
    span = min(opts.static_span, 0.6 * duration)
    out: list[Line] = []
    for _, anchor in seen:
        if any(_same_place(anchor, s) for s in out):
            continue
        same = [(t, ln) for t, ln in seen if _same_place(anchor, ln) and text_distance(anchor.text, ln.text)
                <= opts.same_text]
        times = sorted({t for t, _ in same})
        if len(times) >= opts.min_hits and times[-1] - times[0] >= span:
            out.append(max((ln for _, ln in same), key=lambda ln: ln.score))
    return out


def _same_place(a: Line, b: Line) -> bool:
    ix = _overlap(a.x0, a.x1, b.x0, b.x1)
    iy = _overlap(a.y0, a.y1, b.y0, b.y1)
    if ix <= 0 or iy <= 0:
        return False
    inter = ix * iy
    return inter / ((a.x1 - a.x0) * (a.y1 - a.y0) + (b.x1 - b.x0) * (b.y1 - b.y0) - inter) >= 0.5


def tracking_rows(band: tuple[float, float], line_h: float, height: int) -> tuple[int, int]:
    """Rows tracked around a discovered band: a line's height of room above and below (a
    second line grows upwards from a bottom baseline, downwards from a top one)."""
    y0, y1 = band
    return max(0, int(y0 - 1.2 * line_h)), min(height, int(y1 + 1.2 * line_h + 1))


def readings_to_intervals(readings: list[Reading], opts: SourceSubsOptions, *,
                          duration: float) -> list[tuple[OnScreenText, Patch | None]]:
    """Turn per-sample readings into on-screen intervals, each with its glyph patch.

    Consecutive samples with similar text are one line (an OCR drop-out of one sample
    inside a line is bridged). Each interval reaches halfway to the neighbouring samples
    (half a sample period at the ends), so it is centred on the true on-screen time
    whatever the frame timing (VFR included). The text is the reading with the highest
    summed score: the majority reading, weighted by confidence. The patch is the union of
    the run's glyph masks (OCR boxes jitter by a pixel or two between readings).
    """
    half = 0.5 / opts.sample_fps
    runs: list[list[int]] = []
    for i, r in enumerate(readings):
        if not r.text:
            continue
        if runs:
            last = runs[-1]
            gap = i - last[-1]
            if gap <= 2 and text_distance(readings[last[0]].text, r.text) <= opts.same_text:
                last.append(i)
                continue
        runs.append([i])
    out: list[tuple[OnScreenText, Patch | None]] = []
    for run in runs:
        first, last = run[0], run[-1]
        start = (readings[first - 1].t + readings[first].t) / 2 if first > 0 else readings[first].t - half
        end = (readings[last].t + readings[last + 1].t) / 2 if last + 1 < len(readings) else readings[last].t + half
        votes: dict[str, float] = {}
        for i in run:
            votes[readings[i].text] = votes.get(readings[i].text, 0.0) + readings[i].score
        text = max(votes, key=votes.__getitem__)
        scores = [readings[i].score for i in run if readings[i].text == text]
        patch = union_patches([readings[i].patch for i in run if readings[i].patch is not None])
        out.append((OnScreenText(start=round(max(0.0, start), 3), end=round(min(duration, end), 3), text=text,
                                 confidence=round(float(np.mean(scores)), 4)), patch))
    return out


def union_patches(patches: list[Patch]) -> Patch | None:
    if not patches:
        return None
    x0, y0 = min(p.x0 for p in patches), min(p.y0 for p in patches)
    x1, y1 = max(p.x1 for p in patches), max(p.y1 for p in patches)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    for p in patches:
        mask[p.y0 - y0:p.y1 - y0, p.x0 - x0:p.x1 - x0] |= p.mask
    return Patch(x0, y0, mask)


def edge_mask(gray: np.ndarray, lines: list[Line], *, threshold: int = 60) -> np.ndarray:
    """Strong edges inside the text boxes: the glyph outlines of the current line."""
    g = gray.astype(np.int16)
    mag = np.zeros_like(g)
    mag[:, 1:] += np.abs(np.diff(g, axis=1))
    mag[1:, :] += np.abs(np.diff(g, axis=0))
    inside = np.zeros(g.shape, bool)
    for ln in lines:
        inside[max(0, int(ln.y0)):int(ln.y1) + 1, max(0, int(ln.x0)):int(ln.x1) + 1] = True
    return (mag > threshold) & inside


def same_glyphs(ref: np.ndarray, cur: np.ndarray, mask: np.ndarray, *, tolerance: int = 24) -> float:
    """Fraction of the reference glyph-edge pixels that are unchanged in ``cur``.

    A line on screen keeps its pixels while the scene behind it moves; a new line (or
    none) leaves few of the old edges in place.
    """
    n = int(mask.sum())
    if n == 0:
        return 0.0
    diff = np.abs(ref.astype(np.int16) - cur.astype(np.int16))
    return float((diff[mask] <= tolerance).mean())


#: a pixel this far (luma) from its local background belongs to the glyphs
GLYPH_CONTRAST = 28
#: a text box this much darker or brighter than the picture around it is a subtitle box
BOX_CONTRAST = 22


def glyph_patch(gray: np.ndarray, line: Line, *, dy: int = 0) -> Patch:
    """The glyph mask of one OCR line in ``gray`` (work pixels; the line's rows shifted up
    by ``dy`` to index ``gray``): pixels far from their local background (a median over
    about a glyph's size: strokes are thin, so the median is the picture behind them), which
    catches fill, outline and shadow whatever their colours. A translucent or opaque box
    behind the text (its inside uniformly darker or brighter than the picture around it)
    is masked whole: removing only the glyphs would leave the box.
    """
    import cv2

    h = max(4.0, line.height)
    pad = int(0.3 * h) + 2
    H, W = gray.shape
    y0, y1 = max(0, int(line.y0) - dy - pad), min(H, int(np.ceil(line.y1)) - dy + pad)
    x0, x1 = max(0, int(line.x0) - pad), min(W, int(np.ceil(line.x1)) + pad)
    region = gray[y0:y1, x0:x1]
    k = max(3, int(h * 0.9) | 1)
    bg = cv2.medianBlur(np.ascontiguousarray(region), min(k, 255))
    mask = np.abs(region.astype(np.int16) - bg.astype(np.int16)) > GLYPH_CONTRAST
    if _boxed(gray, (x0, y0, x1, y1), bg, pad):
        mask[:] = True
    return Patch(x0, y0 + dy, mask)


def _boxed(gray: np.ndarray, rect: tuple[int, int, int, int], bg: np.ndarray, pad: int) -> bool:
    """Is the text on a box: the background inside the line uniformly unlike a ring of
    picture just outside it?"""
    x0, y0, x1, y1 = rect
    H, W = gray.shape
    ring = np.concatenate([gray[max(0, y0 - pad):y0, x0:x1].ravel(), gray[y1:min(H, y1 + pad), x0:x1].ravel()])
    if ring.size < 8:
        return False
    inner = bg[pad:-pad or None, pad:-pad or None]
    if inner.size == 0:
        return False
    return abs(float(np.median(inner)) - float(np.median(ring))) > BOX_CONTRAST and float(np.std(inner)) < 30


def band_rect(boxes: list[tuple[float, float, float, float]], scale: float, frame: tuple[int, int],
              pad: int) -> tuple[int, int, int, int]:
    """Union of the subtitle boxes (work pixels) as (x, y, w, h) in source pixels, padded."""
    fw, fh = frame
    x0 = max(0, int(np.floor(min(b[0] for b in boxes) / scale)) - pad)
    y0 = max(0, int(np.floor(min(b[1] for b in boxes) / scale)) - pad)
    x1 = min(fw, int(np.ceil(max(b[2] for b in boxes) / scale)) + pad)
    y1 = min(fh, int(np.ceil(max(b[3] for b in boxes) / scale)) + pad)
    return x0, y0, x1 - x0, y1 - y0


def encode_mask(mask: np.ndarray) -> str:
    """A boolean mask as a base64 1-bit PNG (a few hundred bytes for a subtitle line)."""
    import cv2

    ok, buf = cv2.imencode(".png", mask.astype(np.uint8) * 255, [cv2.IMWRITE_PNG_BILEVEL, 1])
    return base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""


def decode_mask(data: str) -> np.ndarray | None:
    import cv2

    if not data:
        return None
    img = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_GRAYSCALE)
    return None if img is None else img > 127


def patch_box(patch: Patch, scale: float, frame: tuple[int, int]) -> tuple[int, int, int, int]:
    """The patch's rectangle in source pixels (x, y, w, h), clipped to the frame."""
    fw, fh = frame
    x0, y0 = max(0, int(patch.x0 / scale)), max(0, int(patch.y0 / scale))
    x1, y1 = min(fw, int(np.ceil(patch.x1 / scale))), min(fh, int(np.ceil(patch.y1 / scale)))
    return x0, y0, max(1, x1 - x0), max(1, y1 - y0)


def display_size(info: MediaInfo) -> tuple[int, int]:
    """Size of the picture ffmpeg's autorotating decoder delivers (storage pixels, turned)."""
    if info.rotation in (90, 270):
        return info.height, info.width
    return info.width, info.height


def work_scale(info: MediaInfo, short_side: int) -> float:
    return frames.work_scale(info.width, info.height, short_side)


# --------------------------------------------------------------------------- tracking


class BandTracker:
    """Reads the band at every sample, running OCR only when its content changed."""

    def __init__(self, ocr: SubtitleOCR, rows: tuple[int, int], width: int, line_height: float | None,
                 opts: SourceSubsOptions, static: tuple[Line, ...] | list[Line] = ()):
        self.ocr, self.rows, self.width, self.line_height, self.opts = ocr, rows, width, line_height, opts
        self.static = list(static)
        self.readings: list[Reading] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        self._ref: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._current = Reading(0.0, "")
        self._skipped: tuple[int, np.ndarray] | None = None

    def feed(self, t: float, crop: np.ndarray) -> None:
        """``crop``: the band rows of one sample (work scale, luma)."""
        if self._mask is not None and self._ref is not None:
            if same_glyphs(self._ref, crop, self._mask) >= self.opts.same_glyphs:
                self.readings.append(Reading(t, self._current.text, self._current.score, self._current.patch))
                return
            if not self._has_text(crop):  # the line ended: most changes are just that
                self._clear(t)
                return
        else:
            # empty band: look for text at every other sample only (a line lasts far longer
            # than two periods); when it shows up, the skipped sample is compared with it
            if self._skipped is None:
                self._skipped = (len(self.readings), crop)
                self.readings.append(Reading(t, ""))
                return
            index, skipped = self._skipped
            self._skipped = None
            if not self._has_text(crop):
                self.readings.append(Reading(t, ""))
                return
            self.readings.append(self._read(t, crop))
            if self._mask is not None and same_glyphs(crop, skipped, self._mask) >= self.opts.same_glyphs:
                self.readings[index] = replace_t(self._current, self.readings[index].t)
            return
        self.readings.append(self._read(t, crop))

    def _has_text(self, crop: np.ndarray) -> bool:
        return self.ocr.centred_text(crop, self.opts.center_tolerance, self.line_height)

    def _clear(self, t: float) -> None:
        self._current, self._ref, self._mask = Reading(t, ""), None, None
        self.readings.append(self._current)

    def _is_static(self, ln: Line) -> bool:
        shifted = Line(ln.x0, ln.y0 + self.rows[0], ln.x1, ln.y1 + self.rows[0], ln.text, ln.score)
        return any(_same_place(shifted, s) and text_distance(ln.text, s.text) <= self.opts.same_text
                   for s in self.static)

    def _read(self, t: float, crop: np.ndarray) -> Reading:
        lines = [ln for ln in self.ocr.read(crop) if is_subtitle_line(ln, self.width, self.opts)
                 and not self._is_static(ln)]
        score = float(np.mean([ln.score for ln in lines])) if lines else 0.0
        r0 = self.rows[0]
        patch = union_patches([glyph_patch(crop, ln) for ln in lines])
        if patch is not None:
            patch = Patch(patch.x0, patch.y0 + r0, patch.mask)
        self._current = Reading(t, join_lines(lines), score, patch)
        self.boxes += [(ln.x0, ln.y0 + r0, ln.x1, ln.y1 + r0) for ln in lines]
        self._ref = crop
        self._mask = edge_mask(crop, lines) if lines else None
        self._skipped = None
        return self._current


def replace_t(r: Reading, t: float) -> Reading:
    return Reading(t, r.text, r.score, r.patch)


# --------------------------------------------------------------------------- discovery


@dataclass
class Discovery:
    """What the sparse full-frame OCR has seen so far."""

    hits: list[tuple[float, Block]] = field(default_factory=list)
    seen: list[tuple[float, Line]] = field(default_factory=list)
    frames: dict[float, np.ndarray] = field(default_factory=dict)

    def add(self, t: float, lines: list[Line], width: int, opts: SourceSubsOptions) -> None:
        cjk = [ln for ln in lines if is_cjk_line(ln, opts)]
        self.seen += [(t, ln) for ln in cjk]
        centred = [ln for ln in cjk if is_subtitle_line(ln, width, opts)]
        self.hits += [(t, b) for b in blocks(centred)]

    def static_candidates(self, band: tuple[float, float] | None) -> bool:
        """Is there repeated text outside the band that could still prove static?"""
        outside = [(t, ln) for t, ln in self.seen
                   if band is None or _overlap(ln.y0, ln.y1, band[0], band[1]) <= 0]
        return any(sum(1 for _, o in outside if _same_place(ln, o) and o.text == ln.text) >= 2
                   for _, ln in outside)


#: discovery keeps the work-scale frames it has seen, so tracking need not decode them
#: again; past this many it lets them go and tracking decodes from the start
MAX_BUFFERED = 160


def _discover(stream: Iterator[Sample], ocr: SubtitleOCR, opts: SourceSubsOptions, duration: float,
              buffered: list[tuple[float, np.ndarray]] | None):
    """Full-frame OCR every ``discovery_every`` s until the band is found and static text
    (if any is in sight) has been on screen long enough to be told from a long line."""
    found = Discovery()
    band = None
    next_t = 0.0
    static_until = min(opts.static_span, 0.6 * duration) + 0.5
    for s in stream:
        due = s.t >= next_t
        if buffered is None and not due:
            continue  # nothing to keep, nothing to read: not even scaled
        img = s.rows(0, s.height)
        if buffered is not None:
            buffered.append((s.t, img))
            if len(buffered) > MAX_BUFFERED:
                buffered = None
        if not due:
            continue
        slow = s.t >= opts.discovery_slow_after and band is None
        next_t = s.t + (opts.discovery_slow_every if slow else opts.discovery_every) - 1e-3
        lines = ocr.read(img)
        found.add(s.t, lines, s.width, opts)
        found.frames[s.t] = img
        if band is None:
            band = find_band(found.hits, opts)
            if band:
                log.info("subtitle band found at %.1f s: rows %.0f-%.0f (work scale)", s.t, band[0], band[1])
        if band is not None and (s.t >= static_until or not found.static_candidates(band[:2])):
            return band, found, buffered, s
        if band is not None:
            next_t = s.t + 2.0 - 1e-3  # only the static texts are still in question
    return band, found, buffered, None


def static_texts(found: Discovery, opts: SourceSubsOptions, duration: float, scale: float,
                 frame: tuple[int, int]) -> tuple[list[Line], list[StaticText]]:
    lines = find_static(found.seen, opts, duration=duration)
    out = []
    for ln in lines:
        t = next(t for t, s in found.seen if s is ln)
        patch = glyph_patch(found.frames[t], ln)
        out.append(StaticText(text=ln.text, box=patch_box(patch, scale, frame), mask=encode_mask(patch.mask)))
    return lines, out


# --------------------------------------------------------------------------- the stage


def detect_source_subtitles(info: MediaInfo, opts: SourceSubsOptions | None = None, *,
                            ocr: SubtitleOCR | None = None) -> SourceSubtitles:
    """Find the burned-in subtitle band of ``info``'s video and when text shows in it.

    One decoding pass: discovery (sparse full-frame OCR) until the band is established,
    then tracking of the band over the buffered frames and the rest.
    """
    opts = opts or SourceSubsOptions()
    ocr = ocr or SubtitleOCR(opts.threads)
    frame = display_size(info)
    empty = SourceSubtitles(found=False, frame_width=frame[0], frame_height=frame[1], sample_fps=opts.sample_fps,
                            backend=BACKEND, model=MODEL, band_given=opts.band_override is not None)
    t0, calls0 = time.monotonic(), ocr.calls
    scale = work_scale(info, opts.work_short_side)
    work_h, work_w = round(frame[1] * scale), round(frame[0] * scale)

    def samples() -> Iterator[Sample]:
        return frames.read_ahead(iter_samples(Path(info.path), rotation=info.rotation, fps=opts.sample_fps,
                                              short_side=opts.work_short_side))

    stream = samples()
    buffered: list[tuple[float, np.ndarray]] | None = []
    static_lines: list[Line] = []
    static: list[StaticText] = []
    line_h: float | None
    if opts.band_override:
        top, bottom = opts.band_override
        rows = (max(0, int(top * work_h)), min(work_h, int(np.ceil(bottom * work_h))))
        line_h, last = None, None
        buffered = []
        log.info("subtitle band given: rows %d-%d (work scale)", *rows)
    else:
        band, found, buffered, last = _discover(stream, ocr, opts, info.duration, buffered)
        static_lines, static = static_texts(found, opts, info.duration, scale, frame)
        if static:
            log.info("static on-screen text (not dialogue): %s", ", ".join(s.text for s in static))
        if band is None:
            log.info("no burned-in subtitles in %s (%.1f s)", info.path, time.monotonic() - t0)
            return empty.model_copy(update={"static": static})
        rows = tracking_rows(band[:2], band[2], work_h)
        line_h = band[2]

    tracker = BandTracker(ocr, rows, work_w, line_h, opts, static_lines)
    if buffered is None:
        stream.close()
        stream = samples()
    else:
        for t, img in buffered:
            tracker.feed(t, img[rows[0]:rows[1]])
    for s in stream:
        tracker.feed(s.t, s.rows(*rows))

    found_iv = readings_to_intervals(tracker.readings, opts, duration=info.duration)
    intervals = [iv.model_copy(update={"box": patch_box(p, scale, frame), "mask": encode_mask(p.mask)})
                 if p is not None else iv for iv, p in found_iv]
    log.info("source subtitles of %s: %d intervals, %d OCR calls, %.1f s", info.path, len(intervals),
             ocr.calls - calls0, time.monotonic() - t0)
    if not intervals or not tracker.boxes:
        return empty.model_copy(update={"static": static})
    return empty.model_copy(update={
        "found": True, "band": band_rect(tracker.boxes, scale, frame, opts.pad), "intervals": intervals,
        "static": static})


# --------------------------------------------------------------------------- reading an export (QC)


@dataclass(frozen=True)
class Leak:
    """Chinese text OCR could still read in an export frame."""

    t: float
    text: str
    score: float


def qc_times(cue_spans: list[tuple[float, float]], limit: int) -> list[float]:
    """Up to ``limit`` sample times spread over the cues: each chosen cue's middle."""
    if not cue_spans:
        return []
    step = max(1, len(cue_spans) / limit)
    picked = [cue_spans[int(i * step)] for i in range(min(limit, len(cue_spans)))]
    return [round((a + b) / 2, 3) for a, b in picked]


def readable_leaks(frames_: list[tuple[float, np.ndarray]], ocr: SubtitleOCR, *, static: list[str],
                   min_score: float = 0.6, min_chars: int = 2) -> list[Leak]:
    """CJK lines OCR reads with confidence in ``frames_`` (work-scale luma), except the
    known static texts (logo, title) the market keeps. Two characters at least: a lone
    glyph-like smudge is not a readable line."""
    leaks = []
    for t, img in frames_:
        for ln in ocr.read(img):
            cjk = len(_CJK.findall(ln.text))
            if ln.score < min_score or cjk < min_chars:
                continue
            if any(text_distance(ln.text, s) <= 0.34 for s in static):
                continue
            leaks.append(Leak(t, ln.text, round(ln.score, 3)))
    return leaks
