"""Shorter renderings of dub lines that do not fit their slot even at the stretch cap.

Dubbing studios rewrite a line to fit the mouth before they speed it up into mush. The
order here (see synthesize.synthesize_dub): ask a translation backend that can rewrite
(the LLM chat backend, with the source line and a character budget), else apply
deterministic condensing rules (contractions, fillers, hedges), else leave the line and
let QC flag the overflow. Subtitles keep the full translation: only the dub changes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass

from locpipe.errors import LocpipeError
from locpipe.localize.sanitize import clean_line
from locpipe.localize.terms import TITLES

log = logging.getLogger(__name__)

#: bumped when the rules change (part of the synthesize stage key)
RULES_VERSION = 1
#: rewrites must reach this share of the budget to be worth a second synthesis
MIN_GAIN = 0.9

#: (pattern, replacement) applied in order; case-insensitive, first letter case kept
_EN_CONTRACTIONS = [
    (r"\bI am\b", "I'm"), (r"\byou are\b", "you're"), (r"\bwe are\b", "we're"), (r"\bthey are\b", "they're"),
    (r"\bhe is\b", "he's"), (r"\bshe is\b", "she's"), (r"\bit is\b", "it's"), (r"\bthat is\b", "that's"),
    (r"\bwhat is\b", "what's"), (r"\bthere is\b", "there's"), (r"\bdo not\b", "don't"),
    (r"\bdoes not\b", "doesn't"), (r"\bdid not\b", "didn't"), (r"\bis not\b", "isn't"),
    (r"\bare not\b", "aren't"), (r"\bwas not\b", "wasn't"), (r"\bwere not\b", "weren't"),
    (r"\bhave not\b", "haven't"), (r"\bhas not\b", "hasn't"), (r"\bwill not\b", "won't"),
    (r"\bcannot\b", "can't"), (r"\bcan not\b", "can't"), (r"\bwould not\b", "wouldn't"),
    (r"\bshould not\b", "shouldn't"), (r"\bI will\b", "I'll"), (r"\byou will\b", "you'll"),
    (r"\bwe will\b", "we'll"), (r"\bI have\b(?! to)", "I've"), (r"\bI would\b", "I'd"),
    (r"\blet us\b", "let's"), (r"\bgoing to\b", "gonna"),
]
#: words and openers that carry no meaning a viewer misses in a dub
_EN_FILLERS = [
    r"^(?:well|okay|ok|so|oh|um|uh|hmm|look|listen|you know|I mean)\s*[,.]\s*",
    r",?\s*\byou know\b,?", r",?\s*\bI mean\b,?", r"\b(?:really|actually|just|definitely|certainly|basically|"
    r"literally|totally|simply)\s+",
]
_ES_PT_FILLERS = [r"^(?:bueno|pues|mira|oye|bem|olha|então|entonces)\s*[,.]\s*"]
_ID_FILLERS = [r"^(?:nah|jadi|eh|ya)\s*[,.]\s*"]
RULES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "en": (_EN_CONTRACTIONS, _EN_FILLERS),
    "es": ([], _ES_PT_FILLERS),
    "pt": ([], _ES_PT_FILLERS),
    "id": ([], _ID_FILLERS),
}


def _keep_case(match: re.Match, replacement: str) -> str:
    text = match.group(0)
    return replacement[:1].upper() + replacement[1:] if text[:1].isupper() else replacement


def condense(text: str, language: str) -> str:
    """``text`` with the language's condensing rules applied (unchanged where none exist).

    Pure and deterministic: the same line always condenses the same way, so the dub is
    reproducible and cacheable.
    """
    contractions, fillers = RULES.get(language.split("-")[0].lower(), ([], []))
    out = text
    for pattern in fillers:
        out = re.sub(pattern, "", out, flags=re.IGNORECASE)
    for pattern, repl in contractions:
        out = re.sub(pattern, lambda m, r=repl: _keep_case(m, r), out, flags=re.IGNORECASE)
    out = re.sub(r"\s{2,}", " ", out).strip(" ,")
    out = re.sub(r"\s+([,.!?])", r"\1", out)
    if out and text[:1].isupper():
        out = out[:1].upper() + out[1:]
    return out or text


def char_budget(text: str, speech_seconds: float, available_seconds: float, max_stretch: float) -> int:
    """Characters the line may have to fit ``available_seconds`` at the stretch cap.

    Speech length scales with text length closely enough for a target (the synthesis after
    the rewrite is what decides).
    """
    if speech_seconds <= 0:
        return len(text)
    ratio = available_seconds * max_stretch / speech_seconds
    return max(1, int(len(text) * min(ratio, 1.0)))


@dataclass(frozen=True)
class Rewrite:
    text: str
    #: who rewrote it: "llm", "rules"
    by: str


#: (cue index, source text, current text, character budget) -> shorter text or None
ShortenFn = Callable[[int, str, str, int], "Rewrite | None"]


_WORD = re.compile(r"[^\W\d_][\w']*")
#: words that carry no meaning a shortening must keep
_LIGHT = frozenset("a an the to of and but or so is are was were be been am i you he she it we they me him her us them "
                   "my your his its our their this that there then just really very please now".split())
#: a shortening may overshoot the character budget by this share: characters only estimate speech
#: (the synthesis decides), and a line cut a little is better than one cut by a third
SHORTEN_SLACK = 1.2
#: a shortening keeps at least this share of the line's meaningful words ("Leave." for "You
#: really must leave this house today." does not)
SHORTEN_KEEP = 0.5


def _names(text: str) -> set[str]:
    """Capitalised words after the first, and a leading title: what a shortening must keep."""
    words = _WORD.findall(text)
    out = {w for w in words[1:] if w[:1].isupper() and w not in ("I", "I'm", "I'll", "I've", "I'd")}
    if words and re.fullmatch(TITLES, words[0]):
        out.add(words[0])
    return out


def pick_shortening(current: str, candidates: list[str], max_chars: int) -> str | None:
    """The candidate to speak instead of ``current``: shorter, within the budget (with
    ``SHORTEN_SLACK``), every name and ``SHORTEN_KEEP`` of the meaningful words kept; of those,
    the one keeping most of them, then the shortest. None when no candidate qualifies."""
    need = _names(current)
    words = {w.lower() for w in _WORD.findall(current)} - _LIGHT

    def kept(candidate: str) -> int:
        return len(words & {w.lower() for w in _WORD.findall(candidate)})

    ok = [c.strip() for c in candidates if c and c.strip() and len(c.strip()) < len(current)
          and len(c.strip()) <= max_chars * SHORTEN_SLACK and need <= set(_WORD.findall(c))
          and kept(c) >= SHORTEN_KEEP * len(words)]
    return min(ok, key=lambda c: (-kept(c), len(c))) if ok else None


def make_shortener(language: str, backends: list) -> ShortenFn:
    """Try each backend's ``shorten`` (those that can rewrite), then the condensing rules.

    A backend failure never costs the line: it is logged and the next option tried.
    """

    def shorten(index: int, source: str, text: str, budget: int) -> Rewrite | None:
        for backend in backends:
            try:
                candidate = backend.shorten(source, text, language, budget)
            except LocpipeError as exc:
                log.warning("cue %d: %s could not shorten the line: %s", index, backend.name, exc)
                continue
            candidate = clean_line(candidate or "")  # backend text: no controls, bidi or markup (issue 17)
            if candidate and len(candidate) < len(text):
                return Rewrite(candidate, backend.name)
        condensed = condense(text, language)
        if len(condensed) < len(text):
            return Rewrite(condensed, "rules")
        return None

    return shorten
