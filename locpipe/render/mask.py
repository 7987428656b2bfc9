"""Removing the burned-in source subtitles: per cue, only where its glyphs were.

The detector (``locpipe.stages.source_subs``) records, for every on-screen line, the box of
its glyphs and a glyph mask (fill, outline, shadow; a subtitle box whole) at detection
scale. Here each mask is brought to the decoded picture's pixels, dilated (a little beyond
the anti-aliased edge and the detection scale's rounding), and written as the bitmap of an
ffmpeg ``removelogo`` pass over a crop around the band, enabled only while its line is on
screen. ``removelogo`` fills each masked pixel from the unmasked picture around it, so the
grass, sky or face behind the line continues through where the glyphs were: no rectangle,
no blur box, and nothing left for OCR to read. Everything runs inside the one decode of
the shared render.

Pure planning (:func:`plan_fill`) around one thin writer (:func:`write_fill`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from locpipe.artifacts import MediaInfo, SourceSubtitles

#: bumped when the mask geometry changes (part of the render key)
MASK_VERSION = "glyph-removelogo-4"
#: dilation radius as a fraction of the line's height (anti-aliasing, outline blur), at least
#: two source pixels and one detection pixel. The glyph mask already holds outline and shadow,
#: so a wide ring only hands removelogo more picture to invent (0.07: 1-4 dB less band PSNR
#: than 0.03 on the corpus, and on large bold 1080p text no better than the blur box); below
#: 0.05 fragments of outline the mask missed (taken from one frame, over a moving picture)
#: stay visible on the unseen blue-italic style (benchmarks/source_subs.py, frame grabs)
DILATE = 0.05
#: picture kept around the masks inside the crop, as a fraction of the line height:
#: removelogo needs unmasked pixels around a masked one to fill it from
CONTEXT = 0.6
#: passes beyond this many lines are dropped (each is a filter in the graph)
MAX_LAYERS = 400
#: the fill runs on the band scaled so the picture's short side would be this long:
#: removelogo's cost grows with the mask's area times its thickness squared, so full-res
#: 4K glyphs would cost a hundred times a 360p pass, for a fill that is smooth anyway
FILL_SHORT_SIDE = 360
#: ... and further down until no masked pixel lies more than this many pixels inside the
#: mask (removelogo fills a pixel from a disc reaching the mask's edge: a solid 60 px box
#: costs 100 times a 6 px stroke per pixel; measured 18 s vs 0.2 s for 150 small frames).
#: 5 put large bold 1080p text at a third of the resolution (fill below the blur box there);
#: 10 keeps it at about 2/3 for no measurable render cost on the corpus
MAX_DEPTH = 10.0


@dataclass(frozen=True)
class MaskLayer:
    """One ``removelogo`` pass: its bitmap (crop-sized, white = fill) and when it is on
    (no windows: always, e.g. a static logo)."""

    image: np.ndarray
    windows: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class FillPlan:
    """Where the fill works (a crop of the decoded picture) and its passes in order."""

    rect: tuple[int, int, int, int]
    layers: tuple[MaskLayer, ...]
    #: (width, height) the crop is filled at (even; ``rect``'s own size at full scale)
    work: tuple[int, int] = (0, 0)

    @property
    def windows(self) -> list[tuple[float, float]] | None:
        """When any pass is on, or None when one always is."""
        if any(not layer.windows for layer in self.layers):
            return None
        return merge_windows([w for layer in self.layers for w in layer.windows])


def merge_windows(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[tuple[float, float]] = []
    for a, b in sorted(spans):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def frame_of(source: MediaInfo) -> tuple[int, int]:
    return (source.height, source.width) if source.rotation in (90, 270) else (source.width, source.height)


def source_mask(box: tuple[int, int, int, int], mask_png: str, kx: float, ky: float,
                frame: tuple[int, int]) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
    """A detected glyph mask in the decoded picture's pixels, dilated: (rect, bool array).

    ``kx``/``ky`` scale the detection frame to this source's (detection may have run on a
    proxy). The dilation grows with the line (its height) and covers the detection scale's
    rounding (one detection pixel).
    """
    import cv2

    from locpipe.stages.source_subs import decode_mask

    small = decode_mask(mask_png)
    if small is None:
        return None
    x, y, w, h = box
    x0, y0 = int(x * kx), int(y * ky)
    x1, y1 = min(frame[0], math.ceil((x + w) * kx)), min(frame[1], math.ceil((y + h) * ky))
    w, h = x1 - x0, y1 - y0
    if w < 2 or h < 2:
        return None
    big = cv2.resize(small.astype(np.uint8) * 255, (w, h), interpolation=cv2.INTER_LINEAR) > 64
    step = max(w / small.shape[1], h / small.shape[0])
    r = max(2, round(DILATE * h), math.ceil(step))
    m = np.zeros((h + 2 * r, w + 2 * r), np.uint8)
    m[r:r + h, r:r + w] = big
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    rx0, ry0 = x0 - r, y0 - r
    cx0, cy0 = max(0, -rx0), max(0, -ry0)
    cx1 = m.shape[1] - max(0, rx0 + m.shape[1] - frame[0])
    cy1 = m.shape[0] - max(0, ry0 + m.shape[0] - frame[1])
    m = m[cy0:cy1, cx0:cx1]
    return (rx0 + cx0, ry0 + cy0, m.shape[1], m.shape[0]), m > 0


def plan_fill(source_subs: SourceSubtitles, source: MediaInfo, *, static: bool = False) -> FillPlan | None:
    """The fill of ``source_subs``'s lines (and its static texts with ``static``) in
    ``source``'s decoded picture, or None when there is nothing to remove.

    One pass per line, enabled while it shows (widened by half a sample period); one
    crop around them all, even-aligned (4:2:0) with room for the fill's context.
    """
    frame = frame_of(source)
    kx, ky = frame[0] / source_subs.frame_width, frame[1] / source_subs.frame_height
    guard = 0.5 / source_subs.sample_fps
    items: list[tuple[tuple[int, int, int, int], np.ndarray, tuple[tuple[float, float], ...]]] = []
    if source_subs.found:
        for iv in source_subs.intervals:
            if iv.box and iv.mask:
                got = source_mask(iv.box, iv.mask, kx, ky, frame)
                if got:
                    span = (max(0.0, iv.start - guard), min(source.duration, iv.end + guard))
                    items.append((got[0], got[1], (span,)))
    if static:
        for st in source_subs.static:
            got = source_mask(st.box, st.mask, kx, ky, frame)
            if got:
                items.append((got[0], got[1], ()))
    if not items:
        return None
    items = items[:MAX_LAYERS]
    heights = [r[3] for r, _, _ in items]
    margin = max(8, round(CONTEXT * float(np.median(heights))))
    x0 = max(0, min(r[0] for r, _, _ in items) - margin) // 2 * 2
    y0 = max(0, min(r[1] for r, _, _ in items) - margin) // 2 * 2
    x1 = min(frame[0], max(r[0] + r[2] for r, _, _ in items) + margin)
    y1 = min(frame[1], max(r[1] + r[3] for r, _, _ in items) + margin)
    x1, y1 = x1 - (x1 - x0) % 2, y1 - (y1 - y0) % 2
    layers = []
    for (rx, ry, _, _), m, windows in items:
        image = np.zeros((y1 - y0, x1 - x0), bool)
        ix0, iy0 = rx - x0, ry - y0
        sub = m[max(0, -iy0):, max(0, -ix0):]
        ih, iw = min(sub.shape[0], image.shape[0] - max(0, iy0)), min(sub.shape[1], image.shape[1] - max(0, ix0))
        if ih > 0 and iw > 0:
            image[max(0, iy0):max(0, iy0) + ih, max(0, ix0):max(0, ix0) + iw] = sub[:ih, :iw]
            layers.append(MaskLayer(image, windows))
    if not layers:
        return None
    k = min(1.0, FILL_SHORT_SIDE / min(frame), MAX_DEPTH / max(1.0, max(mask_depth(m.image) for m in layers)))
    work = (max(2, round((x1 - x0) * k / 2) * 2), max(2, round((y1 - y0) * k / 2) * 2))
    return FillPlan((x0, y0, x1 - x0, y1 - y0), tuple(layers), work)


def mask_depth(mask: np.ndarray) -> float:
    """How far (pixels) the deepest masked pixel lies from the nearest unmasked one."""
    import cv2

    padded = np.pad(mask.astype(np.uint8), 1)
    return float(cv2.distanceTransform(padded, cv2.DIST_L2, 3).max())


def union_alpha(plan: FillPlan) -> np.ndarray:
    """Where the filled crop replaces the picture: every pass's mask, feathered by a few
    pixels. Outside it the picture stays at full sharpness (the fill itself runs at reduced
    scale); inside it, while no line there is shown, the fill pass is off and the crop is
    the picture itself, only softened by the scaling."""
    import cv2

    union = np.zeros(plan.layers[0].image.shape, np.uint8)
    for layer in plan.layers:
        union |= layer.image.astype(np.uint8)
    return cv2.GaussianBlur(union * 255, (7, 7), 2.0)


def write_alpha(plan: FillPlan, folder: Path) -> Path:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "alpha.png"
    cv2.imwrite(str(path), union_alpha(plan))
    return path


def write_fill(plan: FillPlan, folder: Path) -> list[Path]:
    """The passes' bitmaps as PNG files in ``folder`` (the render's scratch), in order."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, layer in enumerate(plan.layers):
        p = folder / f"mask{i:04d}.png"
        img = layer.image.astype(np.uint8) * 255
        if plan.work != (img.shape[1], img.shape[0]):  # any glyph coverage stays masked
            img = np.where(cv2.resize(img, plan.work, interpolation=cv2.INTER_AREA) > 0, 255, 0).astype(np.uint8)
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- where the target line goes


def band_in_output(source_subs: SourceSubtitles, source: MediaInfo, width: int, height: int,
                   reframe: str) -> tuple[float, float] | None:
    """The source band's rows (top, bottom) in the export frame, after the profile's reframe
    (crop: cover and centre-crop; blur-pad and letterbox: fit and centre), or None."""
    if not source_subs.found or not source_subs.band:
        return None
    k, off = reframe_rows(source, width, height, reframe)
    ky = source.display_height / source_subs.frame_height
    _, y, _, h = source_subs.band
    return off + y * ky * k, off + (y + h) * ky * k


def reframe_rows(source: MediaInfo, width: int, height: int, reframe: str) -> tuple[float, int]:
    """How a display row of ``source`` lands in the export frame: (scale, offset)."""
    from locpipe.render.graph import scaled_size

    dw, dh = source.display_width, source.display_height
    fit = scaled_size(dw, dh, width, height, cover=False)
    if reframe == "crop" or fit == (width, height):
        cw, ch = scaled_size(dw, dh, width, height, cover=True)
        return ch / dh, -(ch - height) // 2
    return fit[1] / dh, (height - fit[1]) // 2


def place_subtitles(market, source_subs: SourceSubtitles | None, source: MediaInfo):
    """``market`` with its subtitles moved onto the source band (style ``position:
    source-band``): the target line's bottom where the source's bottom line ended, so it
    covers what the fill leaves; kept where a two-line block still fits below the safe zone's
    top. Unchanged for ``position: fixed`` or when no band was found.

    With the box cover (policy ``mask: box``, or ``fill`` on a boxed source: see
    :func:`cover_mode`) the policy becomes ``box`` and the target style an opaque box of the
    cover's colour whose bottom meets the cover's bottom, so text box and cover read as one.
    """
    style = market.config.subtitles
    policy = market.config.source_subtitles
    update: dict = {}
    covered = source_subs is not None and cover_mode(policy.mask, policy.cover_boxed, source_subs)
    if covered:
        update["source_subtitles"] = policy.model_copy(update={"mask": "box"})
        style = style.model_copy(update={"box": True, "box_opacity": 1.0})
    p = market.profile
    rows = None
    if source_subs is not None and style.position == "source-band":
        rows = band_in_output(source_subs, source, p.width, p.height, p.reframe)
        cover = cover_in_output(source_subs, source, p.width, p.height, p.reframe) if covered else None
        if rows is not None and cover is not None:
            rows = (rows[0], cover[1] - round(style.size * BOX_PADDING))
    if rows is not None:
        top_room = p.height - p.safe_zone.y0 - math.ceil(2 * style.size * 1.3)
        margin = int(max(0, min(p.height - rows[1], top_room)))
        if margin != style.margin_bottom:
            style = style.model_copy(update={"margin_bottom": margin})
    if style is not market.config.subtitles:
        update["subtitles"] = style
    if not update:
        return market
    return market.model_copy(update={"config": market.config.model_copy(update=update)})


# --------------------------------------------------------------------------- the box cover

#: a line's glyph mask covering at least this share of its box: the text sits on a box of its
#: own (the detector masks a subtitle box whole), which no fill can restore without a bar
BOXED_SHARE = 0.6
#: the cover reaches this far (fraction of the line height) beyond the source lines' boxes
COVER_PAD = 0.25
#: the cover reaches up (or down) to the target line only across a gap of at most this many
#: line heights: a line the safe zone keeps far from the band gets its own box there, and a
#: bar down to the band would hide a third of the picture
REACH = 1.5
#: as media.ass.BOX_PADDING: the target box's padding around its text, fraction of the size
BOX_PADDING = 0.2


def boxed(source_subs: SourceSubtitles) -> bool:
    """Whether the source's subtitles sit on a box: most lines' masks fill their boxes."""
    from locpipe.stages.source_subs import decode_mask

    shares = [float(m.mean()) for iv in source_subs.intervals if iv.mask
              if (m := decode_mask(iv.mask)) is not None and m.size]
    return bool(shares) and float(np.median(shares)) >= BOXED_SHARE


def cover_mode(mask: str, cover_boxed: bool, source_subs: SourceSubtitles) -> bool:
    """Whether the render covers the band with a box: asked for, or a boxed source under "fill"."""
    if not source_subs.found or not any(iv.box for iv in source_subs.intervals):
        return False
    return mask == "box" or (mask == "fill" and cover_boxed and boxed(source_subs))


def cover_rect(source_subs: SourceSubtitles, source: MediaInfo, rows: tuple[int, int] | None = None,
               export: tuple[int, int, str] | None = None) -> tuple[int, int, int, int] | None:
    """The cover in the decoded picture's pixels (x, y, w, h): a bar across the whole width
    over every line's rows together, padded, even-aligned, and reaching the export ``rows``
    (the target line's box, in an ``export`` frame of (width, height, reframe)) so the
    target's own box and the cover are one bar; None without line boxes.

    Full width because the target line's box is as wide as its text, not as the source's:
    a bar from edge to edge reads as a subtitle strip, a box of the Chinese line's width with
    a differently wide box on it as a patch."""
    boxes = [iv.box for iv in source_subs.intervals if iv.box]
    if not boxes:
        return None
    frame = frame_of(source)
    ky = frame[1] / source_subs.frame_height
    pad = COVER_PAD * float(np.median([b[3] for b in boxes])) * ky
    y0 = min(b[1] for b in boxes) * ky - pad
    y1 = max(b[1] + b[3] for b in boxes) * ky + pad
    if rows is not None and export is not None:
        k, off = reframe_rows(source, *export)
        to_src = frame[1] / source.display_height / k
        r0, r1 = (rows[0] - off) * to_src, (rows[1] - off) * to_src
        if max(r0 - y1, y0 - r1) <= REACH * (r1 - r0):  # near: one bar; far (safe zone): the band only
            y0, y1 = min(y0, r0), max(y1, r1)
    top = max(0, int(y0) // 2 * 2)
    bottom = min(frame[1], math.ceil(y1))
    return 0, top, frame[0] // 2 * 2, max(2, (bottom - top) // 2 * 2)


def cover_in_output(source_subs: SourceSubtitles, source: MediaInfo, width: int, height: int,
                    reframe: str) -> tuple[float, float] | None:
    """The cover's rows (top, bottom) in the export frame (see :func:`band_in_output`)."""
    rect = cover_rect(source_subs, source)
    if rect is None:
        return None
    k, off = reframe_rows(source, width, height, reframe)
    ky = source.display_height / frame_of(source)[1]
    return off + rect[1] * ky * k, off + (rect[1] + rect[3]) * ky * k
