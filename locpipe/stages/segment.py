"""Subtitle segmentation: cut translated cues into readable events for each language.

Rules per language (characters per line, characters per second, lines, durations) come from
a table that a market can override. A cue whose text cannot be read in its time is split
into several events (at clause punctuation first, then between words), each given time in
proportion to its length; an event may borrow time from the silence after it, never from
the next line. Whatever still breaks a limit is reported as a violation for QC.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from locpipe.artifacts import SubtitleEvent, SubtitleTrack, Translation
from locpipe.config import SubtitleRules
from locpipe.localize.sanitize import limited_cues
from locpipe.media.subtitles import write_srt, write_vtt


@dataclass(frozen=True)
class LanguageRules:
    max_chars_per_line: int
    max_chars_per_second: float
    max_lines: int = 2
    min_duration: float = 5 / 6
    max_duration: float = 7.0
    #: words separated by spaces (False: break anywhere between characters)
    spaced: bool = True
    rtl: bool = False


#: adult reading limits (line length / reading speed) per base language
DEFAULT_RULES: dict[str, LanguageRules] = {
    "en": LanguageRules(42, 20),
    "es": LanguageRules(42, 17), "pt": LanguageRules(42, 17), "fr": LanguageRules(42, 17),
    "de": LanguageRules(42, 17), "id": LanguageRules(42, 17), "vi": LanguageRules(42, 17),
    "ar": LanguageRules(42, 17, rtl=True),
    "ja": LanguageRules(13, 4, spaced=False),
    "ko": LanguageRules(16, 12),
    "th": LanguageRules(35, 15),
    "zh": LanguageRules(16, 9, spaced=False),
}

#: breaking before these keeps a clause together on the next line
CONJUNCTIONS = {
    "en": {"and", "but", "or", "so", "because", "if", "when", "that", "which", "who", "to"},
    "es": {"y", "pero", "o", "porque", "si", "cuando", "que"},
    "pt": {"e", "mas", "ou", "porque", "se", "quando", "que"},
    "id": {"dan", "tetapi", "atau", "karena", "jika", "ketika", "yang"},
}

RLE, PDF, RLM = "\u202b", "\u202c", "\u200f"


def rules_for(language: str, override: SubtitleRules | None = None) -> LanguageRules:
    base = language.split("-")[0].lower()
    rules = DEFAULT_RULES.get(base, LanguageRules(42, 17))
    if override is None:
        return rules
    return LanguageRules(
        max_chars_per_line=override.max_chars_per_line or rules.max_chars_per_line,
        max_chars_per_second=override.max_chars_per_second or rules.max_chars_per_second,
        max_lines=override.max_lines,
        min_duration=override.min_duration,
        max_duration=override.max_duration,
        spaced=rules.spaced,
        rtl=rules.rtl,
    )


def text_width(text: str, language: str) -> float:
    """Display width in "characters": full-width counts 1, half-width 0.5 for ja/ko."""
    half = language.split("-")[0].lower() in ("ja", "ko")
    width = 0.0
    for ch in text:
        if unicodedata.category(ch) in ("Mn", "Cf"):  # combining marks (Thai, Arabic), bidi marks
            continue
        if half and unicodedata.east_asian_width(ch) in ("H", "Na"):
            width += 0.5
        else:
            width += 1.0
    return width


def _tokens(text: str, spaced: bool) -> list[str]:
    return text.split() if spaced else list(text)


def _join(tokens: list[str], spaced: bool) -> str:
    return (" " if spaced else "").join(tokens)


def wrap_lines(text: str, rules: LanguageRules, language: str) -> list[str]:
    """Break ``text`` into as few lines of at most max_chars_per_line as possible, balanced.

    For two lines the break is chosen to balance their lengths, preferring a break after
    punctuation or before a conjunction.
    """
    if text_width(text, language) <= rules.max_chars_per_line:
        return [text]
    tokens = _tokens(text, rules.spaced)
    conj = CONJUNCTIONS.get(language.split("-")[0].lower(), set())
    best: tuple[float, int] | None = None
    for i in range(1, len(tokens)):
        first, second = _join(tokens[:i], rules.spaced), _join(tokens[i:], rules.spaced)
        w1, w2 = text_width(first, language), text_width(second, language)
        if w1 > rules.max_chars_per_line or w2 > rules.max_chars_per_line:
            continue
        cost = abs(w1 - w2)
        if _is_clause_end(tokens[i - 1]):
            cost -= rules.max_chars_per_line * 0.3
        if rules.spaced and _inside_name(tokens[i - 1], tokens[i]):
            cost += rules.max_chars_per_line * 2  # only when nothing else fits
        if tokens[i].lower().strip(",.") in conj:
            cost -= rules.max_chars_per_line * 0.2
        if best is None or cost < best[0]:
            best = (cost, i)
    if best is not None:
        i = best[1]
        return [_join(tokens[:i], rules.spaced), _join(tokens[i:], rules.spaced)]
    # does not fit in two lines: greedy fill (the caller splits events so this is rare)
    lines, current = [], []
    for tok in tokens:
        candidate = _join(current + [tok], rules.spaced)
        if current and text_width(candidate, language) > rules.max_chars_per_line:
            lines.append(_join(current, rules.spaced))
            current = [tok]
        else:
            current.append(tok)
    if current:
        lines.append(_join(current, rules.spaced))
    return lines


#: abbreviations whose full stop ends no clause ("Mr. Lu" must stay on one line)
ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "st.", "sr.", "sra.", "srta.", "dra.", "prof.", "jr."}


def _is_clause_end(token: str) -> bool:
    return token.lower() not in ABBREVIATIONS and bool(re.search(r"[,.;:!?，。；：！？…]$", token))


def _inside_name(before: str, after: str) -> bool:
    """Whether a break between these tokens would split a name ("Lin | Xiao", "Mr. | Lu").

    Capitalized words in a row with no punctuation between them read as one name; a title
    abbreviation belongs with what follows it.
    """
    if before.lower() in ABBREVIATIONS:
        return True
    return (before[:1].isupper() and after[:1].isupper() and before.isalpha() and len(before) > 1
            and not _is_clause_end(before))


@dataclass
class SplitWork:
    """How many candidate chunks the splitter measured: tests bound it to prove the work is
    near-linear in the line length (a timing bound would be flaky on a shared machine)."""

    steps: int = 0


def _prefix_widths(tokens: list[str], language: str) -> list[float]:
    """Cumulative display widths of the tokens: any span's width in O(1) instead of re-measuring it."""
    out = [0.0]
    for tok in tokens:
        out.append(out[-1] + text_width(tok, language))
    return out


def split_balanced(text: str, n: int, rules: LanguageRules, language: str,
                   work: SplitWork | None = None) -> list[str] | None:
    """Split ``text`` into ``n`` chunks of near-equal width that each fit one event.

    Dynamic programming over word (or character) boundaries: cost is the squared deviation
    from equal widths, minus a bonus for breaking after clause punctuation. None when no
    split into ``n`` chunks fits the event's line budget.

    Near-linear: span widths come from prefix sums, a chunk's start is searched only among
    the tokens that fit one event (a window that slides with its end), and chunk counts that
    cannot reach the end within the budget are skipped. The work is about tokens x (tokens
    per event) x (n - fewest possible chunks + 1), where the earlier version re-measured
    every span in three nested loops (a 5,000-character line ran for minutes).
    """
    tokens = _tokens(text, rules.spaced)
    if n <= 1:
        return [text] if text_width(text, language) <= rules.max_chars_per_line * rules.max_lines else None
    if n > len(tokens):
        return None
    t = len(tokens)
    block = rules.max_chars_per_line * rules.max_lines
    sep = text_width(" ", language) if rules.spaced else 0.0
    prefix = _prefix_widths(tokens, language)
    target = text_width(text, language) / n
    clause = [_is_clause_end(tok) for tok in tokens]
    inside = [rules.spaced and 0 < i < t and _inside_name(tokens[i - 1], tokens[i]) for i in range(t + 1)]

    def width(j: int, i: int) -> float:  # text_width(_join(tokens[j:i])) without joining
        return prefix[i] - prefix[j] + sep * (i - j - 1)

    head, tail = _fewest_prefix(tokens, rules, language), _fewest_prefix(tokens[::-1], rules, language)[::-1]
    inf = float("inf")
    # best[i][k]: cost of splitting tokens[:i] into k chunks; back[i][k]: start of the last chunk.
    # Only the k that can still finish are kept (a few per i), so memory is linear as well.
    best: list[dict[int, float]] = [{} for _ in range(t + 1)]
    back: list[dict[int, int]] = [{} for _ in range(t + 1)]
    best[0][0] = 0.0
    lo = 0  # first start j with width(j, i) <= block; never decreases as i grows
    for i in range(1, t + 1):
        while lo < i and width(lo, i) > block:
            lo += 1
        if lo == i:
            continue  # one token wider than an event: no chunk ends here
        # tokens[:i] needs at least head[i] chunks and tokens[i:] at least tail[i]: other k cannot finish
        k_min, k_max = max(1, head[i]), min(n, i, n - tail[i])
        if k_min > k_max:
            continue
        bonus = (target * 0.5) ** 2 if i < t and clause[i - 1] else 0.0
        if inside[i]:
            bonus -= (2 * target) ** 2  # splitting a name between events: last resort
        row, row_back = best[i], back[i]
        for j in range(lo, i):  # ascending: of equal costs the earliest start wins, as before
            square = (width(j, i) - target) ** 2
            for k_prev, prev_cost in best[j].items():
                k = k_prev + 1
                if k_min <= k <= k_max:
                    cost = prev_cost + square - bonus  # this order: the same floats, the same ties as before
                    if cost < row.get(k, inf):
                        row[k], row_back[k] = cost, j
            if work is not None:
                work.steps += len(best[j])
    if n not in best[t]:
        return None
    chunks, i = [], t
    for k in range(n, 0, -1):
        j = back[i][k]
        chunks.append(_join(tokens[j:i], rules.spaced))
        i = j
    return chunks[::-1]


def _fewest_prefix(tokens: list[str], rules: LanguageRules, language: str) -> list[int | float]:
    """For every i, the fewest chunks that fit one event each and hold tokens[:i] (inf once a
    token is wider than an event). Greedy packing is optimal for every prefix at once."""
    block = rules.max_chars_per_line * rules.max_lines
    sep = text_width(" ", language) if rules.spaced else 0.0
    out: list[int | float] = [0]
    count: int | float = 0
    current: float | None = None
    for tok in tokens:
        w = text_width(tok, language)
        if w > block:
            count = float("inf")
        elif current is None or current + sep + w > block:
            count, current = count + 1, w
        else:
            current += sep + w
        out.append(count)
    return out


def fewest_chunks(tokens: list[str], rules: LanguageRules, language: str) -> int | None:
    """The fewest chunks that fit one event each; None when a single token is wider than an
    event. One pass: the splitter starts from here instead of trying every smaller count first."""
    count = _fewest_prefix(tokens, rules, language)[-1]
    return None if count == float("inf") else int(count)


def segment_cue(
    text: str, start: float, end: float, limit_end: float, rules: LanguageRules, language: str, cue_index: int
) -> list[SubtitleEvent]:
    """Events for one cue spoken in [start, end]; events may extend to ``limit_end``.

    The cue is shown at least as long as reading it takes (borrowing silence up to
    ``limit_end``), cut into as few events as the line budget and the 7 s maximum allow,
    and the time is shared in proportion to each event's length. When even the borrowed
    time is too short the events read fast: that is reported, not hidden in flashes.
    """
    text = text.strip()
    if not text:
        return []
    width = text_width(text, language)
    reading = max(width / rules.max_chars_per_second, rules.min_duration)
    span_end = min(limit_end, max(end, start + reading))
    total = max(span_end - start, 0.01)
    block = rules.max_chars_per_line * rules.max_lines
    n = max(int(-(-width // block)), int(-(-total // rules.max_duration)), 1)
    tokens = _tokens(text, rules.spaced)
    fewest = fewest_chunks(tokens, rules, language) if n > 1 or width > block else 1
    chunks = None
    if fewest is not None and max(n, fewest) <= len(tokens):
        # every count from ``fewest`` on fits: the first one tried used to be found by trying each
        chunks = split_balanced(text, max(n, fewest), rules, language)
    if chunks is None:
        chunks = tokens  # a giant word, or more events than words: nothing better exists
    widths = [max(text_width(c, language), 1.0) for c in chunks]
    events: list[SubtitleEvent] = []
    t = start
    for chunk, w in zip(chunks, widths, strict=True):
        dur = min(total * w / sum(widths), rules.max_duration)
        lines = wrap_lines(chunk, rules, language)
        if rules.rtl:
            lines = [f"{RLE}{line}{PDF}" for line in lines]
        events.append(SubtitleEvent(start=round(t, 3), end=round(t + dur, 3), lines=lines, cue_index=cue_index))
        t += dur
    return events


def segment_translation(
    translation: Translation, rules: LanguageRules, *, duration: float, fps: float = 30.0
) -> list[SubtitleEvent]:
    """Events for a whole episode: never overlapping, at least 2 frames apart."""
    gap = 2.0 / fps
    cues = sorted(translation.cues, key=lambda c: c.start)
    events: list[SubtitleEvent] = []
    for i, cue in enumerate(cues):
        next_start = cues[i + 1].start if i + 1 < len(cues) else duration
        limit_end = max(cue.start + 0.1, min(next_start - gap, duration))
        start = max(cue.start, events[-1].end + gap) if events else cue.start
        events.extend(segment_cue(cue.text, start, max(cue.end, start + 0.1), limit_end, rules,
                                  translation.language, cue.index))
    return events


def violations(events: list[SubtitleEvent], rules: LanguageRules, language: str) -> list[dict]:
    out: list[dict] = []
    for i, ev in enumerate(events):
        text = "".join(ev.lines) if not rules.spaced else " ".join(ev.lines)
        dur = ev.end - ev.start
        cps = text_width(text, language) / dur if dur > 0 else float("inf")
        problems = []
        if len(ev.lines) > rules.max_lines:
            problems.append(f"{len(ev.lines)} lines > {rules.max_lines}")
        long_lines = [ln for ln in ev.lines if text_width(ln, language) > rules.max_chars_per_line]
        if long_lines:
            problems.append(f"line over {rules.max_chars_per_line} chars")
        if cps > rules.max_chars_per_second + 0.05:
            problems.append(f"{cps:.1f} cps > {rules.max_chars_per_second}")
        if dur < rules.min_duration - 0.01:
            problems.append(f"{dur:.2f} s < {rules.min_duration:.2f} s")
        if dur > rules.max_duration + 0.01:
            problems.append(f"{dur:.2f} s > {rules.max_duration:.2f} s")
        if problems:
            out.append({"event": i, "start": ev.start, "text": text, "problems": problems})
    return out


def build_track(translation: Translation, rules: LanguageRules, *, duration: float, fps: float,
                out_dir: Path) -> SubtitleTrack:
    events = segment_translation(translation, rules, duration=duration, fps=fps)
    found = violations(events, rules, translation.language) + limit_violations(translation, events)
    track = SubtitleTrack(language=translation.language, events=events, violations=found)
    write_srt(events, out_dir / track.srt)
    write_vtt(events, out_dir / track.vtt)
    return track


def limit_violations(translation: Translation, events: list[SubtitleEvent]) -> list[dict]:
    """A violation for every cue whose backend text was over its length limit (shortened or
    rejected at translation, ``locpipe.localize.sanitize``): QC fails it, the episode goes on."""
    first = {}
    for i, ev in enumerate(events):
        first.setdefault(ev.cue_index, i)
    by_start = {c.index: c for c in translation.cues}
    return [{"event": first.get(index, -1), "start": by_start[index].start if index in by_start else 0.0,
             "text": by_start[index].text if index in by_start else "", "problems": [problem]}
            for index, problem in sorted(limited_cues(translation.notes).items())]
