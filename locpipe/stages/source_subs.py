"""Source subtitles: find the Chinese subtitles burned into an episode, where and when.

Most micro-dramas arrive with hard Chinese subtitles. Our English ones would be burned on
top of them, so render blurs that band while text is on screen; the recognized text is
the exact script, which a later step fuses with ASR.

How, and why it is cheap enough (a few percent of real time on 2 cores):

1. Frames are sampled at ``sample_fps`` (default 4) with PyAV, decoding reference frames
   only, and scaled so the short side is ``work_short_side`` pixels (4K costs what 720p
   costs). PyAV does not autorotate: frames are turned to the display orientation, so every
   coordinate matches what ffmpeg's autorotating decoder gives render.
2. *Discovery* runs text detection + recognition on the scan regions (bottom half by
   default, optionally a top band) once per ``discovery_every`` seconds, until one
   horizontal band holds centred CJK lines in ``min_hits`` samples with at least
   ``min_distinct`` different texts. Scene text and channel logos fail that test: they are
   off-centre, or they never change.
3. *Tracking* looks at that band only, from the first sample (discovery buffered what it
   scanned, so nothing is decoded twice). Full OCR runs only when the band's content
   changed: while a line is shown its glyph edges stay put even when the picture behind
   them moves, so comparing those edges to the last reading decides "same line" for the
   price of a numpy subtraction. An empty band is checked with detection alone, at half
   scale, every other sample.
4. Readings become intervals: consecutive samples with similar text (OCR jitter) are one
   line; each interval reaches halfway to the neighbouring samples, i.e. half a sample
   period on both sides.

Known limits: one band per episode; a second line joining a line already shown is only
seen at the next change; subtitles that fade over many frames start at their first
readable sample.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from locpipe.artifacts import MediaInfo, OnScreenText, SourceSubtitles
from locpipe.backends.ocr.rapidocr import BACKEND, MODEL, Line, SubtitleOCR
from locpipe.media import frames
from locpipe.media.frames import Sample, iter_samples
from locpipe.metrics import edit_distance

log = logging.getLogger(__name__)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


class SourceSubsOptions(BaseModel):
    """Knobs of the detector; part of the stage's cache key."""

    sample_fps: float = 4.0
    #: fraction of the picture height scanned, measured from the bottom
    scan_bottom: float = 0.5
    #: fraction scanned from the top (0: off); for dramas that caption at the top
    scan_top: float = 0.0
    #: the sampled picture is scaled so its short side is this long (never upscaled)
    work_short_side: int = 540
    discovery_every: float = 1.0
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
    #: padding of the reported band, in source pixels (outline, shadow)
    pad: int = 6
    threads: int = 2


# --------------------------------------------------------------------------- pure parts


@dataclass(frozen=True)
class Reading:
    """What the band showed at one sample time: '' when no subtitle."""

    t: float
    text: str
    score: float = 0.0


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


def is_subtitle_line(line: Line, width: float, opts: SourceSubsOptions) -> bool:
    """Centred, CJK, and read with confidence: what a burned subtitle looks like."""
    centred = abs((line.x0 + line.x1) / 2 - width / 2) <= opts.center_tolerance * width
    return centred and line.score >= opts.min_score and has_cjk(line.text)


def find_band(hits: list[tuple[float, Line]], opts: SourceSubsOptions) -> tuple[float, float] | None:
    """The y-range (work pixels) where subtitle lines recur, or None.

    A band needs lines in ``min_hits`` different samples whose centres agree within half
    a line height, showing at least ``min_distinct`` different texts (a sign or a logo
    repeats; it does not change).
    """
    best: list[tuple[float, Line]] = []
    for _, anchor in hits:
        near = [(t, ln) for t, ln in hits if abs(ln.cy - anchor.cy) <= 0.5 * max(anchor.height, ln.height)]
        if len({t for t, _ in near}) > len({t for t, _ in best}):
            best = near
    if len({t for t, _ in best}) < opts.min_hits:
        return None
    texts: list[str] = []
    for _, ln in best:
        if all(text_distance(ln.text, s) > opts.same_text for s in texts):
            texts.append(ln.text)
    if len(texts) < opts.min_distinct:
        return None
    return min(ln.y0 for _, ln in best), max(ln.y1 for _, ln in best)


def line_height(hits: list[tuple[float, Line]], band: tuple[float, float]) -> float:
    """Median height of the discovery lines inside the band: the subtitle font's size."""
    inside = [ln.height for _, ln in hits if band[0] <= ln.cy <= band[1]]
    return float(np.median(inside)) if inside else band[1] - band[0]


def tracking_rows(band: tuple[float, float], height: int) -> tuple[int, int]:
    """Rows tracked around a discovered band: room for a second line above (subtitles
    grow upwards from their baseline) and a little below."""
    y0, y1 = band
    h = y1 - y0
    return max(0, int(y0 - 1.3 * h)), min(height, int(y1 + 0.5 * h + 1))


def join_lines(lines: list[Line]) -> str:
    return "\n".join(ln.text for ln in sorted(lines, key=lambda ln: ln.cy))


def readings_to_intervals(readings: list[Reading], opts: SourceSubsOptions, *,
                          duration: float) -> list[OnScreenText]:
    """Turn per-sample readings into on-screen intervals.

    Consecutive samples with similar text are one line (an OCR drop-out of one sample
    inside a line is bridged). Each interval reaches halfway to the neighbouring samples
    (half a sample period at the ends), so it is centred on the true on-screen time
    whatever the frame timing (VFR included). The text is the reading with the highest
    summed score: the majority reading, weighted by confidence.
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
    out: list[OnScreenText] = []
    for run in runs:
        first, last = run[0], run[-1]
        start = (readings[first - 1].t + readings[first].t) / 2 if first > 0 else readings[first].t - half
        end = (readings[last].t + readings[last + 1].t) / 2 if last + 1 < len(readings) else readings[last].t + half
        votes: dict[str, float] = {}
        for i in run:
            votes[readings[i].text] = votes.get(readings[i].text, 0.0) + readings[i].score
        text = max(votes, key=votes.__getitem__)
        scores = [readings[i].score for i in run if readings[i].text == text]
        out.append(OnScreenText(start=round(max(0.0, start), 3), end=round(min(duration, end), 3), text=text,
                                confidence=round(float(np.mean(scores)), 4)))
    return out


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


def band_rect(boxes: list[tuple[float, float, float, float]], scale: float, frame: tuple[int, int],
              pad: int) -> tuple[int, int, int, int]:
    """Union of the subtitle boxes (work pixels) as (x, y, w, h) in source pixels, padded."""
    fw, fh = frame
    x0 = max(0, int(np.floor(min(b[0] for b in boxes) / scale)) - pad)
    y0 = max(0, int(np.floor(min(b[1] for b in boxes) / scale)) - pad)
    x1 = min(fw, int(np.ceil(max(b[2] for b in boxes) / scale)) + pad)
    y1 = min(fh, int(np.ceil(max(b[3] for b in boxes) / scale)) + pad)
    return x0, y0, x1 - x0, y1 - y0


def scan_regions(height: int, opts: SourceSubsOptions) -> list[tuple[int, int]]:
    """Row ranges (work pixels) searched during discovery: bottom, then optional top."""
    regions = [(int(height * (1 - opts.scan_bottom)), height)]
    if opts.scan_top > 0:
        regions.append((0, int(height * opts.scan_top)))
    return regions


def display_size(info: MediaInfo) -> tuple[int, int]:
    """Size of the picture ffmpeg's autorotating decoder delivers (storage pixels, turned)."""
    if info.rotation in (90, 270):
        return info.height, info.width
    return info.width, info.height


# --------------------------------------------------------------------------- frames

# decoding and sampling (Sample, iter_samples) live in locpipe.media.frames


def work_scale(info: MediaInfo, short_side: int) -> float:
    return frames.work_scale(info.width, info.height, short_side)


# --------------------------------------------------------------------------- the stage


class BandTracker:
    """Reads the band at every sample, running OCR only when its content changed."""

    def __init__(self, ocr: SubtitleOCR, rows: tuple[int, int], width: int, line_height: float,
                 opts: SourceSubsOptions):
        self.ocr, self.rows, self.width, self.line_height, self.opts = ocr, rows, width, line_height, opts
        self.readings: list[Reading] = []
        self.boxes: list[tuple[float, float, float, float]] = []
        self._ref: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._current = Reading(0.0, "")
        self._skipped: tuple[int, np.ndarray] | None = None

    def feed(self, t: float, crop: np.ndarray) -> None:
        """``crop``: the band rows of one sample (work scale, luma)."""
        if self._mask is not None:
            if same_glyphs(self._ref, crop, self._mask) >= self.opts.same_glyphs:
                self.readings.append(Reading(t, self._current.text, self._current.score))
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
                self.readings[index] = Reading(self.readings[index].t, self._current.text, self._current.score)
            return
        self.readings.append(self._read(t, crop))

    def _has_text(self, crop: np.ndarray) -> bool:
        return self.ocr.centred_text(crop, self.opts.center_tolerance, self.line_height)

    def _clear(self, t: float) -> None:
        self._current, self._ref, self._mask = Reading(t, ""), None, None
        self.readings.append(self._current)

    def _read(self, t: float, crop: np.ndarray) -> Reading:
        lines = [ln for ln in self.ocr.read(crop) if is_subtitle_line(ln, self.width, self.opts)]
        score = float(np.mean([ln.score for ln in lines])) if lines else 0.0
        self._current = Reading(t, join_lines(lines), score)
        self.boxes += [(ln.x0, ln.y0 + self.rows[0], ln.x1, ln.y1 + self.rows[0]) for ln in lines]
        self._ref = crop
        self._mask = edge_mask(crop, lines) if lines else None
        self._skipped = None
        return self._current


#: discovery keeps the scanned rows of the samples it has seen, so tracking need not decode
#: them again; past this many it lets them go and tracking decodes from the start
MAX_BUFFERED = 400


def detect_source_subtitles(info: MediaInfo, opts: SourceSubsOptions | None = None, *,
                            ocr: SubtitleOCR | None = None) -> SourceSubtitles:
    """Find the burned-in subtitle band of ``info``'s video and when text shows in it.

    One decoding pass: discovery (sparse OCR of the scan regions) until the band is
    established, then tracking of the band over the buffered samples and the rest.
    """
    opts = opts or SourceSubsOptions()
    ocr = ocr or SubtitleOCR(opts.threads)
    frame = display_size(info)
    empty = SourceSubtitles(found=False, frame_width=frame[0], frame_height=frame[1], sample_fps=opts.sample_fps,
                            backend=BACKEND, model=MODEL)
    t0, calls0 = time.monotonic(), ocr.calls
    scale = work_scale(info, opts.work_short_side)

    def samples() -> Iterator[Sample]:
        return iter_samples(Path(info.path), rotation=info.rotation, fps=opts.sample_fps,
                            short_side=opts.work_short_side)

    stream = samples()
    hits: list[tuple[float, Line]] = []
    buffered: list[tuple[float, list[tuple[int, np.ndarray]]]] | None = []
    band, next_t = None, 0.0
    for s in stream:
        regions = [(r0, s.rows(r0, r1)) for r0, r1 in scan_regions(s.height, opts)]
        if buffered is not None:
            buffered.append((s.t, regions))
            if len(buffered) > MAX_BUFFERED:
                buffered = None
        if s.t < next_t:
            continue
        next_t = s.t + opts.discovery_every - 1e-3
        for r0, img in regions:
            hits += [(s.t, ln) for ln in ocr.read(img, dy=r0) if is_subtitle_line(ln, s.width, opts)]
        band = find_band(hits, opts)
        if band:
            log.info("subtitle band found at %.1f s: rows %.0f-%.0f (work scale)", s.t, *band)
            break
    if band is None:
        log.info("no burned-in subtitles in %s (%.1f s)", info.path, time.monotonic() - t0)
        return empty

    rows = tracking_rows(band, round(frame[1] * scale))
    tracker = BandTracker(ocr, rows, round(frame[0] * scale), line_height(hits, band), opts)
    if buffered is None:
        stream.close()
        stream = samples()
    else:
        for t, regions in buffered:
            r0, img = next((r0, img) for r0, img in regions if r0 <= rows[0] and r0 + len(img) >= rows[1])
            tracker.feed(t, img[rows[0] - r0:rows[1] - r0])
    for s in stream:
        tracker.feed(s.t, s.rows(*rows))

    intervals = readings_to_intervals(tracker.readings, opts, duration=info.duration)
    log.info("source subtitles of %s: %d intervals, %d OCR calls, %.1f s", info.path, len(intervals),
             ocr.calls - calls0, time.monotonic() - t0)
    if not intervals or not tracker.boxes:
        return empty
    return empty.model_copy(update={
        "found": True, "band": band_rect(tracker.boxes, scale, frame, opts.pad), "intervals": intervals})
