"""Build the ASS document burned into an export: the subtitles plus the visible watermark.

One document per export, laid out at the output resolution (PlayResX/Y = the render
profile's frame), so sizes and margins in the market config are output pixels and libass
does no scaling. Subtitles and the watermark share the file so libass renders both in the
same pass of the ``ass`` filter.

Everything that reaches the file from outside (translated lines, the watermark text) goes
through :func:`escape_text`: ASS has no quoting, so a translated ``{\\fs200}`` would become an
override tag, a ``\\N`` a line break and a raw newline a broken file. Only this module writes
override tags, and only from numbers it computed.
"""

from __future__ import annotations

import logging
import math
import unicodedata
from dataclasses import dataclass

import pysubs2

from locpipe.artifacts import SubtitleTrack
from locpipe.config import RenderProfile, SubtitleStyle

log = logging.getLogger(__name__)

#: languages whose subtitles are laid out right to left
RTL_LANGUAGES = frozenset({"ar", "he", "fa", "ur", "ps", "yi", "ug", "dv"})
#: rendered line height / font size, used to estimate how tall a subtitle block is
LINE_HEIGHT = 1.3
#: padding of the opaque box around text, as a fraction of the font size
BOX_PADDING = 0.2
#: a rendered line's ink height / font size (Latin with ascenders and descenders, Noto Sans)
GLYPH_HEIGHT = 1.1

SUBTITLE_STYLE = "Subtitle"
OVERLAY_STYLE = "Watermark"

RLM = "\u200f"
#: characters that end a line in some text model; in ASS they would end the Dialogue line
_LINE_BREAKS = frozenset("\n\r\t\v\f\x85\u2028\u2029")
#: braces become full-width look-alikes (drawn from the CJK font, never parsed); a backslash
#: stays visible but is followed by WORD JOINER (invisible, in Noto Sans), so it can never
#: start an escape (\N, \n, \h, \{)
_ASS_SYNTAX = str.maketrans({"\\": "\\\u2060", "{": "\uff5b", "}": "\uff5d"})


@dataclass(frozen=True)
class TextOverlay:
    """A text placed at a fixed point (top-left anchor) for a time span: the watermark."""

    start: float
    end: float
    x: int
    y: int
    text: str


@dataclass(frozen=True)
class OverlayLayer:
    """Overlays sharing one look, drawn above the subtitles."""

    overlays: tuple[TextOverlay, ...]
    size: int
    opacity: float
    font: str = "Noto Sans"


@dataclass(frozen=True)
class Margins:
    """Subtitle margins (output px) after clamping into the profile's safe zone."""

    left: int
    right: int
    vertical: int


# --------------------------------------------------------------------------- text


def escape_text(text: str) -> str:
    """Make arbitrary text inert in an ASS Text field (it renders literally, nothing more).

    Braces become their full-width look-alikes (the Noto CJK font has them and libass
    falls back to it), so no override block can open; a backslash is followed by an
    invisible WORD JOINER, so no ``\\N``/``\\n``/``\\h``/``\\{`` escape can form. Line and
    paragraph breaks become spaces; other control characters, surrogates and private-use
    code points are dropped. Format characters (RLE/PDF/RLM, ZWJ) are kept: bidi and
    Indic/emoji shaping need them.
    """
    out = []
    for ch in text:
        if ch in _LINE_BREAKS:
            out.append(" ")
        elif unicodedata.category(ch) in ("Cc", "Cs", "Co"):
            continue
        else:
            out.append(ch)
    return "".join(out).translate(_ASS_SYNTAX)


def is_rtl(language: str) -> bool:
    return language.split("-")[0].lower() in RTL_LANGUAGES


def event_text(lines: list[str], *, rtl: bool = False) -> str:
    """Escaped lines joined by ``\\N``, the only line breaks in the document.

    RTL lines start with an RLM so the paragraph direction is right to left even when a
    line opens with a Latin name or a digit (libass gives each hard line its own bidi
    paragraph when the style's Encoding is -1).
    """
    parts = []
    for line in lines:
        text = escape_text(line).strip()
        if rtl and not text.startswith(RLM):
            text = RLM + text
        parts.append(text)
    return r"\N".join(p for p in parts if p)


# --------------------------------------------------------------------------- layout


def border_px(style: SubtitleStyle) -> float:
    """How far ink reaches beyond the glyphs: the outline, or the padding of the box."""
    if style.box:
        return max(style.outline, round(style.size * BOX_PADDING))
    return style.outline


def subtitle_margins(style: SubtitleStyle, profile: RenderProfile) -> Margins:
    """Margins from the style, pushed inward until the text and its border are in the safe zone.

    Bottom-centred text ends ``MarginV`` px above the frame's bottom, so the safe zone's
    lower edge y1 needs MarginV >= height - y1 (plus the border and shadow below it).
    Sides likewise need MarginL >= x0 and MarginR >= width - x1, plus the border.
    """
    zone = profile.safe_zone
    ink = math.ceil(border_px(style))
    below = ink + math.ceil(style.shadow)
    vertical = max(style.margin_bottom, profile.height - zone.y1 + below)
    left = max(style.margin_sides, zone.x0 + ink)
    right = max(style.margin_sides, profile.width - zone.x1 + ink + math.ceil(style.shadow))
    if (vertical, left, right) != (style.margin_bottom, style.margin_sides, style.margin_sides):
        log.info("subtitle margins clamped into the safe zone of %s: V %d->%d, L/R %d->%d/%d", profile.name,
                 style.margin_bottom, vertical, style.margin_sides, left, right)
    return Margins(left=left, right=right, vertical=vertical)


def subtitle_band(style: SubtitleStyle, profile: RenderProfile, max_lines: int) -> tuple[int, int]:
    """Vertical span (top, bottom) in output px that subtitles may cover, border included.

    An estimate (max_lines lines of LINE_HEIGHT x size): what other overlays must avoid.
    """
    m = subtitle_margins(style, profile)
    ink = math.ceil(border_px(style))
    bottom = profile.height - m.vertical + ink + math.ceil(style.shadow)
    top = profile.height - m.vertical - math.ceil(max_lines * style.size * LINE_HEIGHT) - ink
    return max(top, 0), min(bottom, profile.height)


def bottom_line_rows(style: SubtitleStyle, profile: RenderProfile) -> tuple[int, int]:
    """Rows (top, bottom) of the bottom line's ink in output px, its box or outline included:
    where a cover under the subtitles must reach (``source_subtitles.mask: box``)."""
    m = subtitle_margins(style, profile)
    ink = math.ceil(border_px(style))
    bottom = profile.height - m.vertical
    return max(0, bottom - math.ceil(style.size * GLYPH_HEIGHT) - ink), min(profile.height, bottom + ink)



# --------------------------------------------------------------------------- document


def _colour(hex_rgb: str, opacity: float = 1.0) -> pysubs2.Color:
    """#RRGGBB plus opacity -> pysubs2 colour (ASS alpha: 0 opaque, 255 transparent)."""
    r, g, b = (int(hex_rgb[i:i + 2], 16) for i in (1, 3, 5))
    return pysubs2.Color(r, g, b, ass_alpha(opacity))


def ass_alpha(opacity: float) -> int:
    return max(0, min(255, round((1.0 - opacity) * 255)))


def _field(value: str, what: str) -> str:
    if not pysubs2.formats.substation.is_valid_field_content(value):
        raise ValueError(f"{what} {value!r} cannot go in an ASS field (comma or newline)")
    return value


def subtitle_ass_style(style: SubtitleStyle, margins: Margins, *, rtl: bool = False) -> pysubs2.SSAStyle:
    """The market's look as an ASS style.

    A box is libass's BorderStyle 4: one BackColour rectangle behind the whole event,
    padded by the outline width, with the glyph outline itself made invisible. (BorderStyle
    3 draws one box per line; where the boxes of two lines overlap, the translucency
    doubles into a dark stripe.)
    """
    s = pysubs2.SSAStyle(
        fontname=_field(style.font, "font"),
        fontsize=style.size,
        bold=style.bold,
        primarycolor=_colour(style.primary_colour),
        secondarycolor=_colour(style.primary_colour),
        outlinecolor=_colour(style.outline_colour),
        backcolor=pysubs2.Color(0, 0, 0, 128),
        borderstyle=1,
        outline=style.outline,
        shadow=style.shadow,
        alignment=pysubs2.Alignment.BOTTOM_CENTER,
        marginl=margins.left,
        marginr=margins.right,
        marginv=margins.vertical,
        # -1: libass picks each paragraph's direction from its text (fribidi); any other
        # value forces left-to-right paragraphs (VSFilter compatibility)
        encoding=-1 if rtl else 1,
    )
    if style.box:
        s.borderstyle = 4
        s.outline = border_px(style)
        s.outlinecolor = _colour(style.box_colour, 0.0)
        s.backcolor = _colour(style.box_colour, style.box_opacity)
        s.shadow = 0
    return s


def overlay_outline(size: int) -> float:
    """Outline width of overlay text: thin, but enough to read white text on white."""
    return max(1.0, round(size / 20, 1))


def overlay_ass_style(layer: OverlayLayer) -> pysubs2.SSAStyle:
    """Plain text with a thin dark outline so it reads on any picture; opacity is set per
    event with ``\\alpha`` (it must cover fill, outline and shadow alike)."""
    return pysubs2.SSAStyle(
        fontname=_field(layer.font, "font"),
        fontsize=layer.size,
        bold=False,
        primarycolor=pysubs2.Color(255, 255, 255, 0),
        outlinecolor=pysubs2.Color(0, 0, 0, 0),
        backcolor=pysubs2.Color(0, 0, 0, 0),
        borderstyle=1,
        outline=overlay_outline(layer.size),
        shadow=0,
        alignment=pysubs2.Alignment.TOP_LEFT,
        marginl=0,
        marginr=0,
        marginv=0,
    )


def build_ass(track: SubtitleTrack, style: SubtitleStyle, profile: RenderProfile,
              overlay: OverlayLayer | None = None) -> pysubs2.SSAFile:
    """The whole document: subtitles on layer 0, overlays on layer 1 (``\\pos`` events are
    exempt from libass collision handling, so they never push subtitles around)."""
    rtl = is_rtl(track.language)
    subs = pysubs2.SSAFile()
    subs.info.clear()
    subs.info.update({
        "Title": "locpipe export",
        "PlayResX": str(profile.width),
        "PlayResY": str(profile.height),
        # 0: wrap long lines evenly inside the margins (safe zone) rather than overflow
        "WrapStyle": "0",
        "ScaledBorderAndShadow": "yes",
        "YCbCr Matrix": "TV.709",
    })
    subs.styles.clear()
    subs.styles[SUBTITLE_STYLE] = subtitle_ass_style(style, subtitle_margins(style, profile), rtl=rtl)
    for ev in sorted(track.events, key=lambda e: (e.start, e.end)):
        text = event_text(ev.lines, rtl=rtl)
        if text and ev.end > ev.start:
            subs.events.append(pysubs2.SSAEvent(start=_ms(ev.start), end=_ms(ev.end), text=text,
                                                style=SUBTITLE_STYLE, layer=0))
    if overlay and overlay.overlays:
        subs.styles[OVERLAY_STYLE] = overlay_ass_style(overlay)
        alpha = ass_alpha(overlay.opacity)
        for o in overlay.overlays:
            tags = rf"{{\an7\pos({o.x},{o.y})\alpha&H{alpha:02X}&}}"
            subs.events.append(pysubs2.SSAEvent(start=_ms(o.start), end=_ms(o.end), layer=1,
                                                text=tags + escape_text(o.text), style=OVERLAY_STYLE))
    return subs


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))
