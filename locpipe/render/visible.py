"""The visible moving watermark: who an export was made for, burned into the picture.

The text (distributor, market, episode, export id) jumps to a new position every
``interval`` seconds, so it cannot be cropped or blurred away in one place. Positions come
from a PRNG seeded by a hash of the export id: the same export always gets the same
positions (a leak can be matched against a re-render), another export gets others. The
box always stays inside the profile's safe zone and out of the band where subtitles
appear, so it never covers dialogue text or hides under platform UI.

Everything here is pure: it yields ``TextOverlay`` events that ``locpipe.media.ass`` puts
in the same ASS document as the subtitles.
"""

from __future__ import annotations

import hashlib
import math
import random
import re
import unicodedata
from dataclasses import dataclass

from locpipe.config import Market, SafeZone, WatermarkPolicy
from locpipe.errors import ConfigError
from locpipe.media.ass import OverlayLayer, TextOverlay, overlay_outline, subtitle_band

#: smallest watermark size we shrink to before giving up (still legible at 1080 wide)
MIN_SIZE = 16
#: rendered width / font size per character class, conservative for Noto Sans / CJK
#: (libass fits ascent+descent into the font size, so 1 em is about 0.73 x size)
WIDTH_WIDE = 0.8
WIDTH_CAPITAL = 0.7
WIDTH_NARROW = 0.45
WIDTH_SPACE = 0.3
#: rendered line height / font size (Noto Sans: ascent + descent = size)
HEIGHT = 1.15
#: PRNG domain, so the seed of the visible mark differs from any other use of the export id
SEED_DOMAIN = b"locpipe/watermark-visible/v1\x00"


@dataclass(frozen=True)
class Box:
    """Axis-aligned rectangle in output px: ``x``/``y`` is the top-left corner."""

    x: int
    y: int
    w: int
    h: int

    @property
    def x1(self) -> int:
        return self.x + self.w

    @property
    def y1(self) -> int:
        return self.y + self.h


@dataclass(frozen=True)
class VisibleWatermark:
    text: str
    size: int
    opacity: float
    #: estimated ink box of the text (outline included), top-left at (0, 0)
    box: Box
    #: where the box is in each interval, in time order
    placements: tuple[tuple[float, float, Box], ...]

    def layer(self) -> OverlayLayer:
        """The placements as ASS overlays (``\\pos`` is the text origin, inside the outline)."""
        ol = math.ceil(overlay_outline(self.size))
        return OverlayLayer(
            overlays=tuple(TextOverlay(start=s, end=e, x=b.x + ol, y=b.y + ol, text=self.text)
                           for s, e, b in self.placements),
            size=self.size,
            opacity=self.opacity,
        )


#: longest episode or distributor name the visible mark carries in full: a 250-byte file name
#: must not make the mark too wide to fit (the export id identifies the copy anyway)
FIELD_CHARS = 24


def short_field(value: str, limit: int = FIELD_CHARS) -> str:
    """``value`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return value if len(value) <= limit else value[: limit - 1].rstrip() + "…"


def watermark_text(policy: WatermarkPolicy, *, distributor: str, market: str, episode: str, export_id: str,
                   limit: int = FIELD_CHARS) -> str:
    """The template filled in (placeholders were validated when the config was loaded).

    Names are shortened first (``short_field``): the mark is for a viewer to read, the forensic
    payload and the export id are what a trace relies on.
    """
    return policy.template.format(distributor=short_field(distributor, limit), market=market,
                                  episode=short_field(episode, limit), export_id=export_id).strip()


#: languages whose viewers read Han characters: the episode name stays as it is
HAN_READERS = frozenset({"zh", "ja", "ko"})
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]+")
_WIDE_PUNCT = str.maketrans({"【": "[", "】": "]", "（": "(", "）": ")", "《": "<", "》": ">", "，": ",", "。": ".",
                             "：": ":", "、": " ", "　": " ", "！": "!", "？": "?"})


def episode_label(episode: str, language: str) -> str:
    """The episode's name as the mark shows it to ``language``'s viewers.

    For a market that does not read Chinese, Han characters become pinyin (第3集 -> "Di3Ji",
    an English export must not carry a Chinese file name in its picture) and full-width
    punctuation its ASCII look-alike; other CJK text left after that (kana, hangul) becomes a
    short hash of the name, so the mark still tells episodes apart.
    """
    if language.split("-")[0].lower() in HAN_READERS:
        return episode
    try:
        from pypinyin import lazy_pinyin
    except ImportError:  # optional dependency: a hash still tells episodes apart
        lazy_pinyin = None

    def han(m: re.Match) -> str:
        if lazy_pinyin is None:
            return "ep" + hashlib.sha256(m.group(0).encode()).hexdigest()[:6]
        return "".join(s.capitalize() for s in lazy_pinyin(m.group(0)))

    out = _HAN.sub(han, episode.translate(_WIDE_PUNCT))
    if any(unicodedata.east_asian_width(ch) in ("W", "F") for ch in out):
        out = "ep" + hashlib.sha256(episode.encode()).hexdigest()[:8]
    return out


def fitted_text(policy: WatermarkPolicy, max_width: int, **fields: str) -> tuple[str, int]:
    """The filled template and its size, names shortened further until the mark fits ``max_width``.

    Only an over-long configured template (not a long name) is refused: that is a config error.
    """
    for limit in (FIELD_CHARS, 16, 10, 6):
        text = watermark_text(policy, limit=limit, **fields)
        try:
            return text, fit_size(text, policy.size, max_width)
        except ValueError:
            continue
    return text, fit_size(text, policy.size, max_width)


def text_box(text: str, size: int) -> Box:
    """Estimated ink box of one line of ``text`` at ``size`` px, outline included.

    An over-estimate by design (no font measuring at plan time): a box that is too big only
    narrows where the mark can go; one that is too small could let it leave the safe zone.
    """
    units = 0.0
    for ch in text:
        if unicodedata.east_asian_width(ch) in ("W", "F"):
            units += WIDTH_WIDE
        elif ch.isspace():
            units += WIDTH_SPACE
        elif ch.isupper() or ch in "@%&#—mwMW":
            units += WIDTH_CAPITAL
        elif unicodedata.category(ch) in ("Mn", "Me", "Cf"):
            continue
        else:
            units += WIDTH_NARROW
    ol = 2 * math.ceil(overlay_outline(size))
    return Box(0, 0, math.ceil(units * size) + ol, math.ceil(HEIGHT * size) + ol)


def fit_size(text: str, size: int, max_width: int) -> int:
    """Largest size <= ``size`` whose box fits ``max_width``; ValueError below MIN_SIZE.

    A configured size below MIN_SIZE (the config allows 8) is taken as it is, never grown.
    """
    floor = min(size, MIN_SIZE)
    for s in range(size, floor - 1, -1):
        if text_box(text, s).w <= max_width:
            return s
    raise ValueError(f"watermark text {text!r} is too long to fit {max_width} px even at {floor} px")


def free_rows(zone: SafeZone, band: tuple[int, int], height: int) -> list[tuple[int, int]]:
    """Ranges [lo, hi] of box tops that keep a box of ``height`` inside the zone and
    entirely above or below the subtitle band."""
    top, bottom = band
    rows = [(zone.y0, min(zone.y1, top) - height), (max(zone.y0, bottom), zone.y1 - height)]
    return [(lo, hi) for lo, hi in rows if lo <= hi]


def position_rng(export_id: str) -> random.Random:
    """A PRNG keyed by the export id (SHA-256, so similar ids give unrelated sequences).

    Only ``random()`` is used from it: the Mersenne Twister stream for an integer seed is
    stable across Python versions, which ``randrange``'s algorithm is not promised to be,
    and positions must be reproducible years later when a leak is investigated.
    """
    digest = hashlib.sha256(SEED_DOMAIN + export_id.encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _pick(rng: random.Random, ranges: list[tuple[int, int]]) -> int:
    """One integer uniformly from the union of inclusive ranges."""
    total = sum(hi - lo + 1 for lo, hi in ranges)
    k = min(int(rng.random() * total), total - 1)
    for lo, hi in ranges:
        if k <= hi - lo:
            return lo + k
        k -= hi - lo + 1
    raise AssertionError("unreachable")


def plan_positions(export_id: str, *, duration: float, interval: float, box: Box, zone: SafeZone,
                   band: tuple[int, int]) -> list[tuple[float, float, Box]]:
    """Box placements for each ``interval`` of ``duration``, deterministic per export id.

    Each jump is redrawn (a few times, deterministically) if it lands within a quarter of
    the zone's width of the previous spot, so consecutive positions visibly differ.
    """
    rows = free_rows(zone, band, box.h)
    cols = [(zone.x0, zone.x1 - box.w)]
    if not rows or cols[0][0] > cols[0][1]:
        raise ValueError(f"no room for a {box.w}x{box.h} watermark in safe zone {zone} "
                         f"outside the subtitle band y {band[0]}-{band[1]}")
    rng = position_rng(export_id)
    near = (zone.x1 - zone.x0) / 4
    placements: list[tuple[float, float, Box]] = []
    prev: Box | None = None
    for i in range(math.ceil(duration / interval - 1e-9)):
        for _ in range(8):
            b = Box(_pick(rng, cols), _pick(rng, rows), box.w, box.h)
            if prev is None or math.hypot(b.x - prev.x, b.y - prev.y) >= near:
                break
        start, end = round(i * interval, 3), round(min((i + 1) * interval, duration), 3)
        placements.append((start, end, b))
        prev = b
    return placements


def plan_visible_watermark(market: Market, *, duration: float, distributor: str, episode: str,
                           export_id: str) -> VisibleWatermark | None:
    """The market's visible watermark for one export, or None when the policy is off."""
    policy = market.config.watermark
    if not policy.visible:
        return None
    profile = market.profile
    zone = profile.safe_zone
    band = subtitle_band(market.config.subtitles, profile, market.config.subtitle_rules.max_lines)
    try:
        text, size = fitted_text(policy, zone.x1 - zone.x0, distributor=distributor, market=market.code,
                                 episode=episode_label(episode, market.config.language), export_id=export_id)
        box = text_box(text, size)
        placements = plan_positions(export_id, duration=duration, interval=policy.interval, box=box,
                                    zone=zone, band=band)
    except ValueError as exc:
        raise ConfigError(market.source, "watermark", str(exc)) from None
    return VisibleWatermark(text=text, size=size, opacity=policy.opacity, box=box,
                            placements=tuple(placements))
