"""Choosing a promo's moments: which spans of an episode go into a 15-second ad cut, and why.

Pure functions only (the measurements come in as plain numbers, see ``PromoLine``): every
score is a sum of named signals a loc op can read in the promo JSON and argue with:

- ``punctuation``: exclamations and questions, in the source *and* the market's text
- ``turning_point``: reveal / slap / confrontation words (``TURNING_WORDS``, simple rules)
- ``energy``: the line's speech RMS above the episode's median (raised voices)
- ``llm``: the local model's 0-9 conflict rating of the line, where it ran
- ``exchange``: a short fast exchange: lines per second and speaker changes in the span
- ``cliffhanger``: the span reaches into the episode's last seconds

A span starts and ends in the silence between lines (or on a scene cut inside that
silence), never inside a line or a word, and on the frame grid, so picture and sound cut
at the same instant. The clip's spans are joined with hard cuts; whatever they leave of the
length goes to the end card, so a clip is always exactly ``length`` long.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

#: words of a turning point in Chinese micro-dramas (slap, divorce, firing, pregnancy,
#: the truth, "it was you", "impossible"...): weight per hit
TURNING_WORDS: dict[str, float] = {
    "耳光": 2.0, "打": 0.8, "离婚": 2.0, "开除": 1.5, "真相": 1.5, "怀孕": 2.0, "是你": 1.2, "不可能": 1.5,
    "证据": 1.2, "骗": 1.0, "背叛": 1.5, "滚": 1.5, "杀": 1.5, "死": 1.0, "报警": 1.2, "亲子鉴定": 2.0,
    "分手": 1.5, "凭什么": 1.0, "住手": 1.2, "跪下": 1.5, "闭嘴": 1.2, "原来": 0.8, "竟然": 0.8, "为什么": 0.6,
    "签名": 0.6, "假的": 1.0, "陷害": 1.5, "亏": 0.6, "总裁": 0.4, "身份": 0.8, "退婚": 2.0, "绑架": 2.0,
}
#: line-score weights and caps (see the module docstring)
EXCLAIM = 1.0
QUESTION = 0.6
PUNCT_CAP = 2.5
TURNING_CAP = 3.0
ENERGY_PER_DB = 1 / 3
ENERGY_CAP = 2.0
LLM_WEIGHT = 2.5
#: a span's bonus per line per second above one line every 3 s, and per speaker change
RATE_WEIGHT = 1.5
SPEAKER_CHANGE = 0.4
#: bonus of a span that ends in the last CLIFF_SECONDS of the episode
CLIFF_BONUS = 2.5
CLIFF_SECONDS = 8.0
#: silence kept around a span's first and last line (seconds, at most half the gap)
PAD = 0.2
#: a boundary closer than this to a line or word is inside it
EDGE = 0.02
#: a second or later clip needs this much score (its moments must be worth an ad)
MIN_CLIP_SCORE = 2.0
#: ... and must fill this share of the clip before its end card
MIN_FILL = 0.75
#: silence kept between a widened span and the next line (ASR times are approximate)
WIDEN_GAP = 0.1
#: the shortest span worth a hard cut, and the shortest gap a scene-only cut uses
MIN_SPAN = 1.0
_EXCLAIM_RE = re.compile(r"[!！]")
_QUESTION_RE = re.compile(r"[?？]")


@dataclass(frozen=True)
class PromoLine:
    """One dialogue line and what was measured of it (source timeline, seconds)."""

    index: int
    start: float
    end: float
    source: str
    target: str = ""
    speaker: str | None = None
    #: speech RMS of the line minus the episode's median line RMS (dB); None: not measured
    energy_db: float | None = None
    #: the local model's conflict rating 0-9; None: not rated
    llm: int | None = None
    #: (start, end) of each recognized word: boundaries must avoid these too
    words: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Span:
    """One piece of a clip: [start, end) of the source, the lines in it and why it was chosen."""

    start: float
    end: float
    lines: tuple[int, ...]
    score: float
    signals: dict[str, float]
    why: tuple[str, ...]

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class PromoCut:
    """One clip: its spans in play order, the hook line and the end card's length."""

    number: int
    spans: tuple[Span, ...]
    length: float
    end_card: float
    #: the strongest line's index (its market text is the hook caption); None: no dialogue
    hook_line: int | None
    score: float
    notes: tuple[str, ...] = ()

    @property
    def content(self) -> float:
        return sum(s.seconds for s in self.spans)


@dataclass(frozen=True)
class PromoPlan:
    """Every clip of one episode for one market, plus notes (short episode, no dialogue...)."""

    cuts: tuple[PromoCut, ...]
    notes: tuple[str, ...] = ()
    line_scores: dict[int, dict[str, float]] = field(default_factory=dict)


# --------------------------------------------------------------------------- line signals


def turning_hits(text: str) -> list[str]:
    """The turning-point words in ``text`` (longest first, a shorter word inside a longer hit not counted twice)."""
    hits, rest = [], text
    for word in sorted(TURNING_WORDS, key=len, reverse=True):
        if word in rest:
            hits.append(word)
            rest = rest.replace(word, "\0")
    return hits


def line_signals(line: PromoLine) -> dict[str, float]:
    """The named signals of one line (only the non-zero ones)."""
    texts = (line.source, line.target)
    punct = sum(EXCLAIM * bool(_EXCLAIM_RE.search(t)) + QUESTION * bool(_QUESTION_RE.search(t)) for t in texts)
    out = {"punctuation": min(PUNCT_CAP, punct),
           "turning_point": min(TURNING_CAP, sum(TURNING_WORDS[w] for w in turning_hits(line.source)))}
    if line.energy_db is not None:
        out["energy"] = min(ENERGY_CAP, max(0.0, line.energy_db) * ENERGY_PER_DB)
    if line.llm is not None:
        out["llm"] = LLM_WEIGHT * max(0, min(9, line.llm)) / 9
    return {k: round(v, 3) for k, v in out.items() if v > 0}


def line_score(line: PromoLine) -> float:
    return round(sum(line_signals(line).values()), 3)


def line_reasons(line: PromoLine) -> list[str]:
    """Why a line counts, in words (for the promo JSON)."""
    why = []
    if any(_EXCLAIM_RE.search(t) for t in (line.source, line.target)):
        why.append(f"exclamation in #{line.index}")
    if any(_QUESTION_RE.search(t) for t in (line.source, line.target)):
        why.append(f"question in #{line.index}")
    hits = turning_hits(line.source)
    if hits:
        why.append(f"turning point #{line.index}: {'/'.join(hits)}")
    if line.energy_db is not None and line.energy_db >= 3:
        why.append(f"raised voice #{line.index} (+{line.energy_db:.1f} dB)")
    if line.llm is not None and line.llm >= 6:
        why.append(f"model rates #{line.index} {line.llm}/9")
    return why


def relative_energy(rms_db: list[float | None]) -> list[float | None]:
    """Each line's RMS minus the median of the measured lines (dB); None stays None."""
    values = sorted(v for v in rms_db if v is not None)
    if not values:
        return list(rms_db)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return [None if v is None else round(v - median, 2) for v in rms_db]


# --------------------------------------------------------------------------- boundaries


def on_grid(t: float, fps: float, *, up: bool) -> float:
    """``t`` moved onto the frame grid (1/fps), up or down."""
    k = t * fps
    k = math.ceil(k - 1e-6) if up else math.floor(k + 1e-6)
    return round(k / fps, 6)


def busy_intervals(lines: list[PromoLine]) -> list[tuple[float, float]]:
    """Where someone speaks: every line and every word, sorted (a cut must avoid all of them)."""
    spans = [(ln.start, ln.end) for ln in lines] + [w for ln in lines for w in ln.words]
    return sorted(spans)


def inside_speech(t: float, busy: list[tuple[float, float]], edge: float = EDGE) -> bool:
    return any(a + edge < t < b - edge for a, b in busy)


def speech_start(line: PromoLine) -> float:
    """When the line's speech begins: its cue start, or its first word's when that is earlier
    (sidecar and OCR cue times come from the picture, words from the sound)."""
    return min([line.start] + [a for a, _ in line.words])


def speech_end(line: PromoLine) -> float:
    return max([line.end] + [b for _, b in line.words])


def start_boundary(lines: list[PromoLine], i: int, scene_cuts: list[float], fps: float) -> float:
    """Where a span beginning with line ``i`` starts: a scene cut in the silence before it,
    else PAD (at most half the gap) before the line; on the frame grid, never after its start."""
    begin = speech_start(lines[i])
    prev_end = speech_end(lines[i - 1]) if i > 0 else 0.0
    gap = max(0.0, begin - prev_end)
    cuts = [c for c in scene_cuts if prev_end + EDGE <= c <= begin - EDGE]
    t = max(cuts) if cuts else begin - min(PAD, gap / 2)
    t = on_grid(max(0.0, t), fps, up=False)
    if t < prev_end - 1e-6:  # the grid pushed it into the previous line: the next frame is still silent
        t = on_grid(prev_end, fps, up=True)
    return min(t, on_grid(begin, fps, up=False))


def end_boundary(lines: list[PromoLine], j: int, scene_cuts: list[float], fps: float, duration: float) -> float:
    """Where a span ending with line ``j`` ends: a scene cut in the silence after it, else PAD after it."""
    finish = speech_end(lines[j])
    next_start = speech_start(lines[j + 1]) if j + 1 < len(lines) else duration
    gap = max(0.0, next_start - finish)
    cuts = [c for c in scene_cuts if finish + EDGE <= c <= min(next_start - EDGE, finish + 1.0)]
    t = min(cuts) if cuts else finish + min(PAD, gap / 2)
    t = on_grid(min(duration, t), fps, up=True)
    if t > next_start + 1e-6:
        t = on_grid(next_start, fps, up=False)
    return max(t, on_grid(finish, fps, up=True))


# --------------------------------------------------------------------------- spans


def cliff_start(lines: list[PromoLine], duration: float) -> float:
    """Lines ending after this are the cliffhanger: the episode's last CLIFF_SECONDS, counted
    back from its last words (an episode may end on music after them)."""
    last = max(ln.end for ln in lines)
    return max(0.0, min(duration, last) - CLIFF_SECONDS / 2)


def score_span(lines: list[PromoLine], i: int, j: int, start: float, end: float, cliff: float,
               scores: dict[int, dict[str, float]]) -> Span:
    """Lines i..j as one span: their signals summed, plus the exchange and cliffhanger bonuses."""
    chosen = lines[i:j + 1]
    signals: dict[str, float] = {}
    for ln in chosen:
        for k, v in scores[ln.index].items():
            signals[k] = signals.get(k, 0.0) + v
    seconds = max(end - start, 1e-3)
    rate = len(chosen) / seconds
    changes = sum(1 for a, b in zip(chosen, chosen[1:]) if a.speaker and b.speaker and a.speaker != b.speaker)
    exchange = RATE_WEIGHT * max(0.0, rate - 1 / 3) + SPEAKER_CHANGE * changes
    if exchange > 0:
        signals["exchange"] = exchange
    why = [r for ln in chosen for r in line_reasons(ln)]
    if changes:
        why.append(f"{changes} speaker change(s) in {seconds:.1f} s")
    if chosen[-1].end > cliff:
        signals["cliffhanger"] = CLIFF_BONUS
        why.append("the episode's last line(s) (cliffhanger)")
    if not why:
        why.append(f"fills the clip's length: lines #{chosen[0].index}-#{chosen[-1].index} around the chosen moments")
    signals = {k: round(v, 3) for k, v in signals.items()}
    return Span(start=start, end=end, lines=tuple(ln.index for ln in chosen), score=round(sum(signals.values()), 3),
                signals=signals, why=tuple(why))


def candidate_spans(lines: list[PromoLine], scene_cuts: list[float], *, max_seconds: float, fps: float,
                    duration: float, scores: dict[int, dict[str, float]]) -> list[Span]:
    """Every run of consecutive lines that fits ``max_seconds`` with its padding."""
    out = []
    cliff = cliff_start(lines, duration)
    busy = busy_intervals(lines)  # overlapping lines or words can leave no silent boundary: such runs are skipped
    for i in range(len(lines)):
        start = start_boundary(lines, i, scene_cuts, fps)
        for j in range(i, len(lines)):
            end = end_boundary(lines, j, scene_cuts, fps, duration)
            if end - start > max_seconds + 1e-6:
                break
            if end - start >= MIN_SPAN - 1e-6 and not (inside_speech(start, busy) or inside_speech(end, busy)):
                out.append(score_span(lines, i, j, start, end, cliff, scores))
    return out


def _overlaps(a: Span, b: Span) -> bool:
    return a.start < b.end and b.start < a.end


def fill(candidates: list[Span], budget: float, taken: list[Span]) -> list[Span]:
    """Greedy: the best-scoring spans (score per second, then score) that fit the budget and
    overlap nothing already taken; returned in episode order."""
    picked: list[Span] = []
    left = budget
    ranked = sorted(candidates, key=lambda s: (-s.score, -s.score / s.seconds, s.start))
    for span in ranked:
        if span.score <= 0 and picked:
            break
        if span.seconds <= left + 1e-6 and not any(_overlaps(span, o) for o in picked + taken):
            picked.append(span)
            left -= span.seconds
        if left < MIN_SPAN:
            break
    return sorted(picked, key=lambda s: s.start)


def widen(spans: list[Span], lines: list[PromoLine], extra: float, *, fps: float, duration: float,
          taken: list[Span]) -> list[Span]:
    """Spans grown into the silence around them by up to ``extra`` seconds in all (ends
    first, then starts), never into a line, a word or another span: a clip whose moments
    fall short of the length gets breathing room instead of a longer end card."""
    busy = busy_intervals(lines)
    out = list(spans)
    for side in ("end", "start"):
        for k, span in enumerate(out):
            if extra < 1 / fps:
                return out
            others = [o for i, o in enumerate(out) if i != k] + taken
            if side == "end":
                limit = min([a for a, _b in busy if a >= span.end - EDGE] + [duration + WIDEN_GAP]
                            + [o.start + WIDEN_GAP for o in others if o.start >= span.end - 1e-6])
                new = on_grid(min(span.end + extra, limit - WIDEN_GAP, duration), fps, up=False)
                if new > span.end:
                    extra -= new - span.end
                    out[k] = _moved(span, span.start, new)
            else:
                limit = max([b for _a, b in busy if b <= span.start + EDGE] + [-WIDEN_GAP]
                            + [o.end - WIDEN_GAP for o in others if o.end <= span.start + 1e-6])
                new = on_grid(max(span.start - extra, limit + WIDEN_GAP, 0.0), fps, up=True)
                if new < span.start:
                    extra -= span.start - new
                    out[k] = _moved(span, new, span.end)
    return out


def _moved(span: Span, start: float, end: float) -> Span:
    return Span(start=start, end=end, lines=span.lines, score=span.score, signals=span.signals, why=span.why)


def scene_spans(scene_cuts: list[float], duration: float, budget: float, fps: float,
                energy: list[tuple[float, float, float]] | None = None) -> list[Span]:
    """No dialogue: the episode's end (its cliffhanger), cut back to the last scene cut that
    leaves at most ``budget`` seconds; ``energy`` ((start, end, rms dB) windows) is noted, not used to move it."""
    end = on_grid(duration, fps, up=False)
    start = on_grid(max(0.0, end - budget), fps, up=True)
    inside = [c for c in scene_cuts if start <= c <= end - MIN_SPAN]
    if inside:
        start = on_grid(min(inside), fps, up=True)
    why = ("no dialogue: the episode's last seconds, starting on a scene cut" if inside
           else "no dialogue: the episode's last seconds")
    return [Span(start=start, end=end, lines=(), score=CLIFF_BONUS, signals={"cliffhanger": CLIFF_BONUS},
                 why=(why,))]


def plan_promos(lines: list[PromoLine], scene_cuts: list[float], *, duration: float, fps: float, length: float,
                count: int, end_card: float) -> PromoPlan:
    """Up to ``count`` clips of exactly ``length`` seconds each (content + end card).

    Clip n takes the best spans no earlier clip used; when the material runs out there are
    fewer clips and a note says so. An episode shorter than the clip gets no clip.
    """
    budget = round(length - end_card, 6)
    if duration < length:
        return PromoPlan(cuts=(), notes=(f"episode is {duration:.1f} s, shorter than the {length:g} s promo: "
                                         "no promo cut",))
    scores = {ln.index: line_signals(ln) for ln in lines}
    ordered = sorted(lines, key=lambda ln: ln.start)
    if not ordered:
        spans = scene_spans(scene_cuts, duration, budget, fps)
        return PromoPlan(cuts=(_cut(1, spans, length, {}, ordered),),
                         notes=("no dialogue in the episode: one clip from its last scene(s) only",))
    candidates = candidate_spans(ordered, scene_cuts, max_seconds=budget, fps=fps, duration=duration, scores=scores)
    cuts: list[PromoCut] = []
    taken: list[Span] = []
    notes: list[str] = []
    for n in range(1, count + 1):
        spans = fill(candidates, budget, taken)
        if not spans or (cuts and sum(sp.score for sp in spans) < MIN_CLIP_SCORE):
            notes.append(f"material for {len(cuts)} clip(s) only (asked {count}): each line is used once, and the "
                         f"lines left score below {MIN_CLIP_SCORE:g}")
            break
        spans = widen(spans, ordered, budget - sum(sp.seconds for sp in spans), fps=fps, duration=duration,
                      taken=taken)
        if cuts and sum(sp.seconds for sp in spans) < MIN_FILL * budget:
            notes.append(f"material for {len(cuts)} clip(s) only (asked {count}): the moments left fill less than "
                         f"{MIN_FILL:.0%} of the clip (the end card would be longer than the scene)")
            break
        taken += spans
        cuts.append(_cut(n, spans, length, scores, ordered))
    if not candidates:
        notes.append(f"no line fits a {budget:g} s span")
    return PromoPlan(cuts=tuple(cuts), notes=tuple(notes), line_scores=scores)


def _cut(number: int, spans: list[Span], length: float, scores: dict[int, dict[str, float]],
         lines: list[PromoLine]) -> PromoCut:
    used = [i for s in spans for i in s.lines]
    texts = {ln.index: (ln.target or ln.source) for ln in lines}
    ranked = sorted(used, key=lambda i: (-sum(scores.get(i, {}).values()), used.index(i)))
    hook = next((i for i in ranked if texts.get(i, "").strip()), None)
    content = sum(s.seconds for s in spans)
    return PromoCut(number=number, spans=tuple(spans), length=length, end_card=round(length - content, 6),
                    hook_line=hook, score=round(sum(s.score for s in spans), 3))


def cut_points(cut: PromoCut) -> list[float]:
    """Every source time where the clip cuts (each span's start and end)."""
    return [t for s in cut.spans for t in (s.start, s.end)]


def cuts_inside_speech(cut: PromoCut, lines: list[PromoLine]) -> list[float]:
    """The clip's cut points that fall inside a line or a word (QC: must be none)."""
    busy = busy_intervals(lines)
    return [t for t in cut_points(cut) if inside_speech(t, busy)]


def timeline(cut: PromoCut) -> list[tuple[float, float, float]]:
    """(source start, source end, clip offset) of each span."""
    out, offset = [], 0.0
    for s in cut.spans:
        out.append((s.start, s.end, round(offset, 6)))
        offset += s.seconds
    return out


def to_clip_time(cut: PromoCut, a: float, b: float) -> list[tuple[float, float]]:
    """Source interval [a, b] as the clip intervals where it shows (clipped to each span)."""
    out = []
    for s0, s1, off in timeline(cut):
        lo, hi = max(a, s0), min(b, s1)
        if hi > lo:
            out.append((round(off + lo - s0, 3), round(off + hi - s0, 3)))
    return out
