"""Untrusted text in: every line from a translation backend, a sidecar or a review file.

Why one module: text from outside (a web API, a local LLM, an SRT someone edited) reaches
the segmenter, the TTS, the sidecar writers and the burned-in subtitles. Any of it may be
hostile or merely broken: a 5,000-character answer that makes every later step slow, a
newline followed by ``00:00:01,000 --> 00:00:30,000`` that becomes a real cue in an SRT,
ASS override tags (``{\\pos(0,0)\\fs200}``) or HTML tags that players interpret, or a
right-to-left override (U+202E) that reverses the line on screen. So text is cleaned and
bounded once, where it enters (:func:`clean_cue`), and every stage after it can trust it.

What is kept: letters, marks and punctuation of every script, ZWJ/ZWNJ (Persian, Indic
and emoji sequences need them). What is removed: control characters, format characters
(bidi embeddings, overrides and isolates, zero-width spaces, BOM), private-use and
surrogate code points, subtitle markup. Line breaks become spaces; nothing looks like a
cue timing (``-->`` becomes ``→``, a timestamp's colons ``∶``: the same rule the sidecar
writers apply, :func:`locpipe.media.subtitles.defuse_timing`).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass

from locpipe.media.subtitles import defuse_timing

log = logging.getLogger(__name__)

#: zero-width non-joiner and joiner: needed by Persian, Indic scripts and emoji sequences
KEEP_FORMAT = frozenset({"\u200c", "\u200d"})
#: categories removed: control, format (bidi overrides, ZWSP, BOM), surrogate, private use
DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})
#: categories that separate words: line and paragraph separators become spaces
SPACE_CATEGORIES = frozenset({"Zl", "Zp"})
#: ASS/SSA override blocks ({\pos(0,0)\fs200}) and drawing commands: never part of a translation
ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
#: HTML-like styling tags that SRT readers (ffmpeg, VLC, mpv) interpret
HTML_TAG = re.compile(r"</?\s*(?:b|i|u|s|font|ruby|rt|c|v|lang)(?:\s[^<>]*)?>", re.IGNORECASE)
#: literal ASS line-break escapes (\N, \n, \h) a backend may have copied from a subtitle file
ASS_ESCAPES = re.compile(r"\\[Nnh]")

#: chars a viewer may be shown per second of a cue, as a multiple of the market's reading speed
READING_SLACK = 3.0
#: a cue is never limited below this many seconds of reading (short cues borrow silence)
MIN_SECONDS = 1.5
#: a line longer than this multiple of its limit is garbage (a model stuck in a loop): rejected
REJECT_FACTOR = 10
#: notes of limited lines start with this (segmentation turns them into QC violations)
LIMIT_NOTE = "text limit"


@dataclass(frozen=True)
class CleanText:
    """A cleaned line and, when it broke a rule, what was done about it (for notes and QC)."""

    text: str
    problem: str = ""


def clean_chars(text: str) -> str:
    """``text`` without control/format/private characters, on one line, whitespace collapsed.

    Linear in the length: one pass over the characters, then one regex pass.
    """
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in KEEP_FORMAT:
            out.append(ch)
        elif cat in SPACE_CATEGORIES or ch in "\t\n\r\v\f\x85":
            out.append(" ")
        elif cat not in DROP_CATEGORIES:
            out.append(ch)
    return " ".join("".join(out).split())


def strip_markup(text: str) -> str:
    """``text`` without ASS override blocks, ASS line-break escapes, styling tags and timing arrows."""
    text = ASS_OVERRIDE.sub("", text)
    text = ASS_ESCAPES.sub(" ", text)
    return defuse_timing(HTML_TAG.sub("", text))


def clean_line(text: str) -> str:
    """One untrusted line made safe for every stage and every subtitle format (no length limit)."""
    return clean_chars(strip_markup(clean_chars(text)))


def cue_limit(seconds: float, chars_per_second: float, block_chars: int) -> int:
    """The most characters a cue of ``seconds`` may carry: generous (READING_SLACK times the
    market's reading speed, never less than two full events), so only runaway text hits it."""
    return max(2 * block_chars, math.ceil(max(seconds, MIN_SECONDS) * chars_per_second * READING_SLACK))


def shorten(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary when there is one, with "…"."""
    if len(text) <= limit:
        return text
    cut = text[:max(1, limit - 1)]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def clean_cue(text: str, seconds: float, chars_per_second: float, block_chars: int) -> CleanText:
    """A backend's line for a cue of ``seconds``: cleaned, then bounded (see :func:`cue_limit`).

    Over the limit a line is shortened; over ``REJECT_FACTOR`` times it the line is rejected
    (empty: the cue goes out untranslated and QC says so). Either way only this line is
    affected, never the episode. The raw text is cut before cleaning so that cleaning itself
    never works on more than a bounded multiple of the limit.
    """
    limit = cue_limit(seconds, chars_per_second, block_chars)
    raw_len = len(text)
    if raw_len > REJECT_FACTOR * limit * 4:  # bound the work of cleaning, not only its result
        text = text[:REJECT_FACTOR * limit * 4]
    clean = clean_line(text)
    if len(clean) > REJECT_FACTOR * limit:
        return CleanText("", f"{LIMIT_NOTE}: {raw_len} characters for a {seconds:.1f} s cue "
                             f"(limit {limit}): rejected")
    if len(clean) > limit:
        return CleanText(shorten(clean, limit), f"{LIMIT_NOTE}: {len(clean)} characters for a {seconds:.1f} s cue "
                                                f"(limit {limit}): shortened")
    return CleanText(clean)


def clean_for_language(text: str, seconds: float, language: str) -> CleanText:
    """:func:`clean_cue` with the language's default reading rules (``stages.segment``)."""
    from locpipe.stages.segment import rules_for

    rules = rules_for(language)
    return clean_cue(text, seconds, rules.max_chars_per_second, rules.max_chars_per_line * rules.max_lines)


_LIMIT_NOTE_RE = re.compile(rf"^cue (\d+): ({LIMIT_NOTE}: .*)$")


def limited_cues(notes: list[str]) -> dict[int, str]:
    """cue index -> what the text limit did, from a translation's notes (``cue N: text limit: ...``)."""
    return {int(m.group(1)): m.group(2) for note in notes if (m := _LIMIT_NOTE_RE.match(note))}
