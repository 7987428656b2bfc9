"""Subtitle files: pysubs2 writes SRT, WebVTT and ASS, and reads SRT. One library, one model.

Sidecar text is written *literally*. pysubs2 holds text in ASS form, so its SRT/VTT writers
turn ``\\N``/``\\n``/``\\h`` into whitespace, strip the cue, collapse blank lines and drop an
event whose text looks like a ``{\\p1}`` drawing. A translated line may contain any of that,
and a delivered subtitle must show it as typed. So the text goes through pysubs2 in an inert
encoding (:func:`_protect`: backslash, braces, newline and the escape character itself become
private-use escapes, and two sentinels keep the ends from being stripped) and comes back
exactly (:func:`_restore`). The bytes are those the earlier SRT and VTT writers produced
(tests/test_subtitles.py keeps them as literals).

The ASS document itself (styles, layout, escaping for libass) is built in
:mod:`locpipe.media.ass`; only its file writing lives here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pysubs2

from locpipe.artifacts import SubtitleEvent

#: escape character of the inert encoding (private use: no font draws it, no format parses it)
_ESC = "\ue000"
_PROTECT = str.maketrans({_ESC: _ESC + "e", "\\": _ESC + "b", "{": _ESC + "o", "}": _ESC + "c", "\n": _ESC + "n"})
_RESTORE = {"e": _ESC, "b": "\\", "o": "{", "c": "}", "n": "\n", "(": "", ")": ""}
_ESCAPED = re.compile(_ESC + "(.)", re.DOTALL)
#: ``&``, ``<`` and ``>`` are markup in WebVTT cue text (``<b>`` would render bold)
_VTT_MARKUP = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})
#: the SRT/WebVTT timing arrow (``-->``; ``--->`` too): never inside cue text
_TIMING_ARROW = re.compile(r"-{2,}>")
_TIMESTAMP = re.compile(r"\d{1,2}:\d{1,2}:\d{1,2}[.,]\d{1,3}")
#: ASS override blocks and line-break escapes, which SRT readers apply although SRT has no such syntax
_ASS_OVERRIDE = re.compile(r"\{\\[^{}]*\}")
_ASS_ESCAPE = re.compile(r"\\([Nnh])")


# --------------------------------------------------------------------------- text (pure)


def _protect(text: str) -> str:
    """``text`` with nothing pysubs2 interprets: no backslash, brace or newline, no whitespace
    at either end (sentinels), so its SRT/VTT writers copy it verbatim."""
    return f"{_ESC}({text.translate(_PROTECT)}{_ESC})"


def _restore(written: str) -> str:
    """Undo :func:`_protect` everywhere in a written document (only protected text has escapes)."""
    return _ESCAPED.sub(lambda m: _RESTORE[m.group(1)], written)


def _ms(seconds: float) -> int:
    """Milliseconds as the earlier writers rounded them (Python's round: half to even)."""
    return round(seconds * 1000)


def _cue_lines(lines: list[str]) -> list[str]:
    """The text lines of a cue with nothing that ends it or starts another: every newline
    splits a line, blank lines are dropped (a blank line ends a cue in SRT and WebVTT) and
    nothing looks like a timing line (:func:`defuse_timing`)."""
    pieces = (piece for line in lines for piece in line.split("\n"))
    return [defuse_timing(piece) for piece in pieces if piece.strip()]


def defuse_timing(line: str) -> str:
    """``line`` with nothing a subtitle reader takes for a cue's timing: ``-->`` becomes ``→``
    and a timestamp's colons become ``∶`` (U+2236, the same look): pysubs2 and several
    editors read any line holding two ``00:00:01,000`` stamps as a timing line, arrow or not."""
    return _TIMESTAMP.sub(lambda m: m.group(0).replace(":", "\u2236"), _TIMING_ARROW.sub("→", line))


def _srt_line(line: str) -> str:
    """One SRT line with no ASS markup left: SRT has no escape for it, and ffmpeg, VLC and
    mpv apply ``{\\...}`` override blocks and turn ``\\N``/``\\n``/``\\h`` into breaks. Override
    blocks are dropped; the escapes keep their look with a full-width reverse solidus."""
    return _ASS_ESCAPE.sub(lambda m: "\uff3c" + m.group(1), _ASS_OVERRIDE.sub("", line))


def srt_text(lines: list[str]) -> str:
    """An event's SRT cue text: its lines joined by newlines, made unable to inject cues or
    styling (:func:`_cue_lines`, :func:`_srt_line`); HTML-like tags, SRT's own markup, stay.

    A cue ending in a newline loses that one newline: the earlier SRT writer added the blank
    line after a cue only when the text did not already end in one, so its files never
    carried it.
    """
    return "\n".join(_srt_line(line) for line in _cue_lines(lines))


def vtt_text(lines: list[str]) -> str:
    """An event's WebVTT cue text: each line with ``&``/``<``/``>`` as character references,
    and nothing that ends the cue or starts another (:func:`_cue_lines`)."""
    return "\n".join(line.translate(_VTT_MARKUP) for line in _cue_lines(lines))


def _without_cue_ids(vtt: str) -> str:
    """pysubs2's WebVTT with its cue numbers removed and one newline at the end.

    pysubs2 numbers the cues (``1``, ``2``, ... before each timing line) and ends each with a
    blank line; the VTT files delivered so far have no cue identifiers and end in a single
    newline. Called on the protected document, where every cue is exactly ``id``, timing and
    text lines (cue text holds no newline until :func:`_restore`).
    """
    header, *cues = vtt.split("\n\n")
    return header + "\n" + "".join("\n" + cue.split("\n", 1)[1] + "\n" for cue in cues if cue)


def _document(events: list[SubtitleEvent], text_of: Callable[[list[str]], str]) -> pysubs2.SSAFile:
    """pysubs2 events of ``events``, each text made by ``text_of`` from its lines, protected."""
    subs = pysubs2.SSAFile()
    for ev in events:
        subs.events.append(pysubs2.SSAEvent(start=_ms(ev.start), end=_ms(ev.end), text=_protect(text_of(ev.lines))))
    return subs


def srt_string(events: list[SubtitleEvent]) -> str:
    """SRT of ``events``, numbered from 1 in the given order, text literal."""
    return _restore(_document(events, srt_text).to_string("srt", keep_ssa_tags=True))


def vtt_string(events: list[SubtitleEvent]) -> str:
    """WebVTT of ``events`` (cues in start order, no identifiers), text literal but markup-escaped."""
    return _restore(_without_cue_ids(_document(events, vtt_text).to_string("vtt", keep_ssa_tags=True)))


# --------------------------------------------------------------------------- files


def _write(path: Path, text: str) -> Path:
    # newline="\n": the same bytes on every platform (pysubs2's own save writes os.linesep)
    path.write_text(text, encoding="utf-8", newline="\n")
    return path


def write_srt(events: list[SubtitleEvent], path: Path) -> Path:
    """SRT sidecar, UTF-8; text is written literally (no tag interpretation)."""
    return _write(path, srt_string(events))


def write_vtt(events: list[SubtitleEvent], path: Path) -> Path:
    """WebVTT sidecar, UTF-8; ``<``/``>``/``&`` are escaped because VTT cue text is markup."""
    return _write(path, vtt_string(events))


def write_ass(subs: pysubs2.SSAFile, path: Path) -> Path:
    """Write an ASS document (see :func:`locpipe.media.ass.build_ass`), UTF-8 without a BOM;
    the caller's directory is the export's own."""
    path.write_text(subs.to_string("ass"), encoding="utf-8")
    return path


def _load_srt(path: Path) -> pysubs2.SSAFile:
    """Parse an SRT file with its text kept as written (HTML-like tags too).

    pysubs2 reads cue line breaks as ``\\N``; a backslash already in the file is protected
    first, so :func:`_srt_event_text` can tell the two apart.
    """
    raw = path.read_text(encoding="utf-8").replace(_ESC, _ESC + "e").replace("\\", _ESC + "b")
    return pysubs2.SSAFile.from_string(raw, format_="srt", keep_html_tags=True)


def _srt_event_text(ev: pysubs2.SSAEvent) -> str:
    """A read cue's text: lines joined by newlines, trailing spaces of each line dropped (as
    the earlier SRT reader did; pysubs2 also drops the cue's leading whitespace)."""
    return "\n".join(line.rstrip() for line in _restore(ev.text.replace("\\N", _ESC + "n")).split("\n"))


def read_srt_texts(path: Path) -> list[str]:
    """The cue texts of an SRT file, in file order (lines joined by ``\\n``)."""
    return [_srt_event_text(ev) for ev in _load_srt(path)]


def read_srt_spans(path: Path) -> list[tuple[int, int]]:
    """(start, end) in milliseconds of every cue of an SRT file, in file order."""
    return [(ev.start, ev.end) for ev in _load_srt(path)]
