"""The review loop's pure half: review files out, a linguist's edits in, checked line by line.

A linguist corrects the machine translation (or the Chinese transcript) in the subtitle
editor they already use. What they hand back is untrusted text in a format that editors
rewrite freely (renumbered cues, CRLF, a BOM, ``.`` for ``,`` in times), so this module
parses it leniently but checks every cue strictly, and says for each problem which file and
which line: a broken timing line, a cue that no longer matches the episode's cues, text in
the wrong language. A bad cue keeps the machine version; every other edit is used (the
linguist is the final word, so an over-speed line is kept and only flagged).

No I/O here: ``locpipe.core.review`` reads and writes the files around these functions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field

from locpipe.localize.sanitize import clean_line
from locpipe.stages.translate import CJK_LANGUAGES, CJK_RE

#: Han ideographs (CJK Unified + Extension A + compatibility): the source script
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
#: SRT timing line; editors write ``,`` or ``.`` before the milliseconds, 1-3 digits
_STAMP = r"(\d{1,3}):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
TIMING_RE = re.compile(rf"^\s*{_STAMP}\s*-->\s*{_STAMP}")
#: times closer than this count as unchanged (SRT has millisecond resolution)
TIME_EPS = 0.0015
#: an edited cue whose times share nothing with its cue and moved further than this is
#: taken for a file made for another cut of the episode, not a retiming
MAX_SHIFT = 2.0
TSV_COLUMNS = ["index", "start", "end", "speaker", "source", "machine", "final", "flags"]
REVIEW_FORMAT = "locpipe-review/1"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a review file; ``line`` is the file's line number (1-based)."""

    message: str
    line: int | None = None

    def where(self, file: str) -> str:
        return f"{file}:{self.line}: {self.message}" if self.line else f"{file}: {self.message}"


@dataclass(frozen=True)
class EditedCue:
    """One cue as the reviewer's file has it."""

    start: float
    end: float
    text: str
    line: int


@dataclass(frozen=True)
class MachineCue:
    """One cue of the episode as the pipeline made it (the version a review is compared with)."""

    index: int
    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Change:
    """One cue the reviewer changed: what changed, and the file line it came from."""

    index: int
    what: tuple[str, ...]
    before: str
    after: str
    line: int
    start: float
    end: float


@dataclass
class Outcome:
    """The final cues after a review, the accepted changes, rejected edits and warnings."""

    cues: list[MachineCue]
    changes: list[Change] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)


# --------------------------------------------------------------------------- hashes and times


def version_hash(cues: list[MachineCue]) -> str:
    """Hash of a version of an episode's cues (times to the millisecond, text): an import
    compares it with the one recorded at export to tell which version a file was made from."""
    payload = "\n".join(f"{round(c.start * 1000)}\t{round(c.end * 1000)}\t{c.text}" for c in cues)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def timing_hash(cues: list[MachineCue]) -> str:
    """Hash of the cue times alone: changes with the cut, not with a corrected translation."""
    return version_hash([MachineCue(c.index, c.start, c.end, "") for c in cues])


def srt_time(seconds: float) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def parse_time(text: str) -> float | None:
    """``00:00:01,250`` / ``0:00:01.25`` / seconds as a number; None when it is neither."""
    text = text.strip()
    m = re.fullmatch(r"(\d{1,3}):(\d{1,2}):(\d{1,2})(?:[,.](\d{1,3}))?", text)
    if m:
        h, mi, s, frac = m.groups()
        return int(h) * 3600 + int(mi) * 60 + int(s) + (int(frac.ljust(3, "0")) / 1000 if frac else 0.0)
    try:
        value = float(text)
    except ValueError:
        return None
    return value if value >= 0 else None


def _stamp(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


# --------------------------------------------------------------------------- SRT


def parse_srt(text: str) -> tuple[list[EditedCue], list[Problem]]:
    """Cues of an SRT as editors write it, and every problem with the line it is on.

    Lenient where editors differ (BOM, CRLF, missing or renumbered cue numbers, ``.`` before
    the milliseconds, extra blank lines); strict where the meaning is lost (a block with no
    timing line, an end before its start). A cue's lines are joined with a space: the
    segmenter wraps the translation again for the market's rules.
    """
    lines = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cues: list[EditedCue] = []
    problems: list[Problem] = []
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        block: list[tuple[int, str]] = []
        while i < len(lines) and lines[i].strip():
            block.append((i + 1, lines[i]))
            i += 1
        timing_at = next((k for k, (_n, raw) in enumerate(block[:2]) if TIMING_RE.match(raw)), None)
        if timing_at is None:
            problems.append(Problem(f"no timing line (HH:MM:SS,mmm --> HH:MM:SS,mmm) in the cue starting "
                                    f"{block[0][1].strip()[:40]!r}", block_start + 1))
            continue
        number, raw = block[timing_at]
        g = TIMING_RE.match(raw).groups()  # type: ignore[union-attr]
        start, end = _stamp(*g[:4]), _stamp(*g[4:])
        body = " ".join(t.strip() for _n, t in block[timing_at + 1:] if t.strip())
        if end <= start:
            problems.append(Problem(f"cue ends ({srt_time(end)}) before it starts ({srt_time(start)})", number))
            continue
        cues.append(EditedCue(start=start, end=end, text=body, line=number))
    return cues, problems


# --------------------------------------------------------------------------- TSV


def _cell(text: str) -> str:
    """A TSV cell: tabs and line breaks would split the row."""
    return re.sub(r"[\t\r\n]+", " ", text)


def format_tsv(header: dict[str, str], rows: list[dict]) -> str:
    """The review table: a ``#`` header line (episode, language, version hashes), the column
    names, one row per cue. ``final`` starts as the current text and is the column to edit."""
    head = "# " + " ".join([REVIEW_FORMAT] + [f"{k}={_cell(str(v)).replace(' ', '_')}" for k, v in header.items()])
    out = [head, "\t".join(TSV_COLUMNS)]
    out += ["\t".join(_cell(str(row.get(col, ""))) for col in TSV_COLUMNS) for row in rows]
    return "\n".join(out) + "\n"


def parse_tsv_header(text: str) -> dict[str, str]:
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip().strip('"')
    if not first.startswith("#"):
        return {}
    return dict(part.split("=", 1) for part in first[1:].split() if "=" in part)


def parse_tsv(text: str) -> tuple[list[EditedCue], list[Problem]]:
    """Cues of an edited review table (the ``final`` text with the ``start``/``end`` times).

    Spreadsheets may quote cells and add empty rows; both are tolerated. A row whose
    times do not read is a problem naming its line.
    """
    cues: list[EditedCue] = []
    problems: list[Problem] = []
    columns: list[str] | None = None
    for number, raw in enumerate(text.lstrip("\ufeff").replace("\r\n", "\n").split("\n"), 1):
        if not raw.strip() or raw.lstrip('"').startswith("#"):
            continue
        cells = [c.strip().strip('"') for c in raw.split("\t")]
        if columns is None:
            columns = [c.lower() for c in cells]
            missing = [c for c in ("start", "end", "final") if c not in columns]
            if missing:
                return [], [Problem(f"no column {', '.join(missing)} (the header row needs {', '.join(TSV_COLUMNS)})",
                                    number)]
            continue
        row = dict(zip(columns, cells + [""] * (len(columns) - len(cells))))
        start, end = parse_time(row["start"]), parse_time(row["end"])
        if start is None or end is None:
            problems.append(Problem(f"start/end {row['start']!r}/{row['end']!r} are not times", number))
            continue
        if end <= start:
            problems.append(Problem(f"cue ends ({srt_time(end)}) before it starts ({srt_time(start)})", number))
            continue
        cues.append(EditedCue(start=start, end=end, text=row["final"], line=number))
    if columns is None:
        problems.append(Problem("empty table: no header row"))
    return cues, problems


# --------------------------------------------------------------------------- checks


def reading_speed(text: str, seconds: float) -> float:
    """Characters per second as subtitle guidelines count them (spaces included, line breaks not)."""
    return len(text.strip()) / max(seconds, 1e-3)


def language_problem(text: str, language: str) -> str:
    """Why ``text`` cannot be a line in ``language`` ("" when it can): Chinese left in a Latin
    line, or a source-transcript line with no Chinese at all."""
    base = language.split("-")[0].lower()
    if base == "zh":
        return "" if HAN_RE.search(text) else f"no Chinese characters in a {language} line: {text[:40]!r}"
    if base not in CJK_LANGUAGES and CJK_RE.search(text):
        found = "".join(CJK_RE.findall(text))[:12]
        return f"Chinese/CJK text {found!r} left in a {language} line"
    return ""


def match_cues(machine: list[MachineCue], edited: list[EditedCue], *,
               by_time: bool = False) -> tuple[dict[int, EditedCue], list[Problem]]:
    """machine position -> edited cue. Same count: cue by cue (editors renumber, so numbers
    are not trusted). Otherwise, or ``by_time`` (the file was made for other cue times), each
    edited cue goes to the machine cue it overlaps most, once; an edited cue that overlaps
    none (an added or split line) is a problem."""
    if len(machine) == len(edited) and not by_time:
        return dict(enumerate(edited)), []
    problems = [Problem(f"{len(edited)} cues in the file, {len(machine)} in the episode: cues matched by time")
                ] if len(machine) != len(edited) else []
    pairs: dict[int, EditedCue] = {}
    for cue in edited:
        overlaps = [(min(m.end, cue.end) - max(m.start, cue.start), k) for k, m in enumerate(machine) if k not in pairs]
        best = max(overlaps, default=(0.0, -1))
        if best[0] <= 0:
            problems.append(Problem(f"cue {srt_time(cue.start)} --> {srt_time(cue.end)} {cue.text[:30]!r} matches "
                                    "no cue of the episode (lines cannot be added or split): ignored", cue.line))
            continue
        pairs[best[1]] = cue
    return pairs, problems


def _retime_problem(m: MachineCue, e: EditedCue, prev_end: float, duration: float) -> str:
    if e.start < -TIME_EPS or (duration and e.end > duration + 0.5):
        return f"times {srt_time(e.start)} --> {srt_time(e.end)} are outside the episode (0 to {srt_time(duration)})"
    if e.start < prev_end - TIME_EPS:
        return f"starts at {srt_time(e.start)}, before the previous cue ends ({srt_time(prev_end)})"
    shared = min(m.end, e.end) - max(m.start, e.start)
    if shared <= 0 and abs(e.start - m.start) > MAX_SHIFT:
        return (f"times {srt_time(e.start)} --> {srt_time(e.end)} no longer match the episode's cue "
                f"{srt_time(m.start)} --> {srt_time(m.end)} (a file made for another cut?)")
    return ""


def apply_review(machine: list[MachineCue], edited: list[EditedCue], *, language: str, duration: float,
                 max_cps: float, base: list[MachineCue] | None = None, by_time: bool = False) -> Outcome:
    """The episode's cues with the reviewer's valid edits applied, cue by cue.

    ``base`` is the version the file was exported from (default: ``machine``): a cue is an
    edit when the file differs from it, so a line the reviewer left alone takes the current
    machine version even if that improved since the export.

    Rejected (the machine version stays, a problem names the line): a cue matching none of
    the episode's, text in the wrong language, an emptied line, times outside the episode,
    overlapping the previous cue or moved away from the cue entirely. Kept with a warning: a
    line over the reading speed ``max_cps``.
    """
    base = base if base is not None and len(base) == len(machine) else machine
    pairs, problems = match_cues(machine, edited, by_time=by_time)
    out = Outcome(cues=[], problems=problems)
    prev_end = 0.0
    for k, m in enumerate(machine):
        e, b = pairs.get(k), base[k]
        final = m
        if e is not None:
            text = clean_line(e.text)
            text_changed = " ".join(text.split()) != " ".join(b.text.split())
            time_changed = abs(e.start - b.start) > TIME_EPS or abs(e.end - b.end) > TIME_EPS
            problem = ""
            if text_changed and not text:
                problem = "the line is empty: a cue cannot be deleted in review (keep the text, or fix the source)"
            elif text_changed:
                problem = language_problem(text, language)
            if not problem and time_changed:
                problem = _retime_problem(m, e, prev_end, duration)
            if problem:
                out.problems.append(Problem(f"cue {k + 1}: {problem}; kept the machine version", e.line))
            elif text_changed or time_changed:
                what = tuple(w for w, on in (("text", text_changed), ("timing", time_changed)) if on)
                start, end = (round(e.start, 3), round(e.end, 3)) if time_changed else (m.start, m.end)
                final = MachineCue(m.index, start, end, text if text_changed else m.text)
                out.changes.append(Change(m.index, what, m.text, final.text, e.line, final.start, final.end))
                cps = reading_speed(final.text, final.end - final.start)
                if cps > max_cps:
                    out.warnings.append(Problem(f"cue {k + 1}: {cps:.1f} characters/s is over the market's reading "
                                                f"speed {max_cps:g} (kept: the reviewer's word is final)", e.line))
        out.cues.append(final)
        prev_end = max(prev_end, final.end)
    return out


def qc_flags(text: str, start: float, end: float, max_cps: float, notes: list[str]) -> str:
    """The flags column of a review table: reading speed over the limit, then ``notes``
    (glossary violations, adaptations the pipeline made on the line)."""
    flags = []
    cps = reading_speed(text, end - start)
    if cps > max_cps:
        flags.append(f"cps {cps:.1f}>{max_cps:g}")
    return "; ".join(flags + notes)
