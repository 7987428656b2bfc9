"""Term protection: bible names and terms come out the same in every line, whatever the backend.

Text backends: before translation each bible form in the Chinese line is replaced by a
placeholder ``__T1__`` (spaced from its neighbours), and after translation the placeholder is
replaced by the bible's rendering for the target language. Why this form: it is plain ASCII
letters, digits and underscores, which engines treat like a code or product id and copy
verbatim (bracket characters such as ``⟦1⟧`` or ``{1}`` are rewritten or dropped by some
engines and ``{...}`` collides with ASS override syntax); the restorer also accepts the damage
seen in practice (``__ T1 __``, ``__t1__``, ``_T1_``). The bundled tests can only reach the
local fake servers, which keep it intact; a placeholder that is lost or duplicated is
reported, never silently accepted.

Speech backends (Whisper translates the audio, not the text) cannot take placeholders: their
English is post-edited instead. Mis-heard forms of a bible name ("Lin Xiaoyang", "Lin Xiao
Yang", "Lu Zong", "Mr. Lu Zong", "President Lu") are found by a deliberately conservative
matcher keyed on each name's pinyin, replaced by the bible rendering, and every change is
logged. Afterwards :func:`glossary_violations` checks each line: a source line with a bible
term whose target lacks the required rendering, or a target with a forbidden rendering.
"""

from __future__ import annotations

import difflib
import logging
import re
from dataclasses import dataclass, field

from locpipe.localize.bible import SURNAME_SLOT, SeriesBible, _forbidden_for, for_language

log = logging.getLogger(__name__)

#: common single-character Chinese surnames (the ~100 most frequent)
SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁"
            "任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱"
            "严覃武戴莫孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝"
            "包宁尚符舒阮柯纪梅童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟"
            "艾尤阳时穆农司卓古吉缪简车项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边"
            "卞姬师和仇栾隋商刁沙荣巫寇桑郎甄丛仲虞敖巩明佘池查麻苑迟邝")
PLACEHOLDER_RE = re.compile(r"_{1,2}\s*[Tt]\s*(\d{1,3})\s*_{1,2}")
#: titles an English speech backend puts before a surname
#: titles a translation puts before a surname (English, Spanish, Portuguese, Indonesian)
TITLES = (r"(?:Mr|Mrs|Ms|Miss|Mister|Madam|President|CEO|Boss|Director|Chairman|General|Manager|Master|Sir"
          r"|Se[ñn]or|Se[ñn]ora|Senhor|Senhora|Sr|Sra|Presidente|Jefe|Chefe|Pak|Bapak|Bu|Ibu|Tuan)")
PINYIN_SYLLABLE = re.compile(
    r"^(zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?(iang|iong|uang|ueng|ang|eng|ing|ong|ian|iao|uai|uan|ai|ei|ao|ou|an|en|er"
    r"|ia|ie|iu|in|ua|uo|ui|un|ue|ve|a|o|e|i|u|v)$")
#: similarity (difflib ratio, letters only, lower case) above which a capitalized span is a mis-heard name
FUZZY_RATIO = 0.8
_OPEN, _CLOSE = "\x02", "\x03"  # marks restored renderings while spacing is fixed


@dataclass(frozen=True)
class TermEntry:
    """One bible entry for one target language."""

    key: str
    #: Chinese forms that mean this entry (the key and its aliases)
    forms: tuple[str, ...]
    target: str
    kind: str  # name | term | honorific
    protect: bool = True
    forbidden: tuple[str, ...] = ()
    #: romanization of the key, for finding mis-heard forms in speech-based output
    syllables: tuple[str, ...] = ()


def romanize(chinese: str) -> tuple[str, ...]:
    """Pinyin syllables without tones; empty when pypinyin is not installed."""
    try:
        from pypinyin import lazy_pinyin
    except ImportError:  # optional: the post-editor then relies on renderings and forbidden forms
        return ()
    return tuple(s for s in lazy_pinyin(chinese) if s.isalpha())


def surname_romanization(surname: str) -> str:
    syl = romanize(surname)
    return syl[0].capitalize() if syl else surname


def term_table(bible: SeriesBible | None, language: str, texts: list[str] = ()) -> list[TermEntry]:
    """The bible's entries that have a rendering in ``language``.

    Honorific patterns ("<surname>总") are expanded against ``texts`` into concrete entries
    (王总 -> "Mr. Wang") unless a character already defines that form.
    """
    if bible is None:
        return []
    entries: list[TermEntry] = []
    for key, c in bible.characters.items():
        target = for_language(c.render, language)
        if target:
            syl = tuple(c.pinyin.lower().split()) if c.pinyin else romanize(key)
            entries.append(TermEntry(key=key, forms=(key, *c.aliases), target=target, kind="name",
                                     forbidden=tuple(_forbidden_for(c.forbidden, language)), syllables=syl))
    for key, t in bible.glossary.items():
        target = for_language(t.render, language)
        if target:
            entries.append(TermEntry(key=key, forms=(key,), target=target, kind="term", protect=t.protect,
                                     forbidden=tuple(_forbidden_for(t.forbidden, language))))
    known = {f for e in entries for f in e.forms}
    for key, h in bible.honorifics.items():
        target = for_language(h.render, language)
        if not (target and h.protect):
            continue
        if SURNAME_SLOT not in key:
            entries.append(TermEntry(key=key, forms=(key,), target=target, kind="honorific"))
            continue
        prefix, suffix = key.split(SURNAME_SLOT, 1)
        pattern = re.compile(re.escape(prefix) + f"([{SURNAMES}])" + re.escape(suffix) + "(?!裁)")
        for text in texts:
            for m in pattern.finditer(text):
                form = m.group(0)
                if form not in known:
                    known.add(form)
                    entries.append(TermEntry(key=form, forms=(form,), kind="name", syllables=romanize(form),
                                             target=target.replace("{surname}", surname_romanization(m.group(1)))))
    return entries


# ---------------------------------------------------------------------------- placeholders


@dataclass
class Protected:
    """A source line with placeholders, and which entry each placeholder stands for."""

    text: str
    slots: dict[int, TermEntry] = field(default_factory=dict)


def protect(text: str, table: list[TermEntry]) -> Protected:
    """Replace every protectable bible form (longest first) by a numbered placeholder."""
    forms = sorted(((f, e) for e in table if e.protect for f in e.forms), key=lambda fe: -len(fe[0]))
    if not forms:
        return Protected(text)
    out: list[str] = []
    slots: dict[int, TermEntry] = {}
    i = 0
    while i < len(text):
        hit = next(((f, e) for f, e in forms if text.startswith(f, i)), None)
        if hit is None:
            out.append(text[i])
            i += 1
            continue
        slots[len(slots) + 1] = hit[1]
        out.append(f" __T{len(slots)}__ ")
        i += len(hit[0])
    return Protected(re.sub(r" {2,}", " ", "".join(out)).strip(), slots)


@dataclass
class Restored:
    text: str
    lost: list[TermEntry] = field(default_factory=list)
    duplicated: list[TermEntry] = field(default_factory=list)
    stray: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.stray)


def restore(translated: str, protected: Protected) -> Restored:
    """Put the target renderings back; report placeholders that were lost, repeated or invented."""
    seen: dict[int, int] = {}
    stray: list[str] = []

    def put(m: re.Match) -> str:
        n = int(m.group(1))
        if n not in protected.slots:
            stray.append(m.group(0))
            return " "
        seen[n] = seen.get(n, 0) + 1
        return f" {_OPEN}{protected.slots[n].target}{_CLOSE} "

    text = PLACEHOLDER_RE.sub(put, translated)
    text = re.sub(rf"{_CLOSE}\s+(?=[,.!?;:…)\]'’\"”])", _CLOSE, text)  # "Mr. Lu ," -> "Mr. Lu,"
    text = re.sub(rf"(?<=[(\[‘“\"¿¡])\s+{_OPEN}", _OPEN, text)
    text = re.sub(rf"(^\s*|[.!?…]\s+){_OPEN}([a-z])", lambda m: m.group(1) + _OPEN + m.group(2).upper(), text)
    text = re.sub(r"\s+", " ", text.replace(_OPEN, "").replace(_CLOSE, "")).strip()
    return Restored(
        text=text,
        lost=[e for n, e in protected.slots.items() if n not in seen],
        duplicated=[protected.slots[n] for n, k in seen.items() if k > 1],
        stray=stray,
    )


# ---------------------------------------------------------------------------- post-editing


def _contains(text: str, phrase: str) -> bool:
    """Case-insensitive phrase match at word edges (substring for scripts without spaces)."""
    if not phrase:
        return False
    if not phrase[0].isascii():
        return phrase.lower() in text.lower()
    return re.search(rf"(?<!\w){re.escape(phrase)}", text, re.IGNORECASE) is not None


def _contains_word(text: str, phrase: str) -> bool:
    """``phrase`` as whole words (a name glued to more letters is a different word)."""
    return re.search(rf"(?<![A-Za-z]){re.escape(phrase)}(?![A-Za-z])", text, re.IGNORECASE) is not None


def _core_pattern(syllables: tuple[str, ...]) -> re.Pattern:
    """The syllables as a name in Latin script: "Lin Xiao", "Lin-Xiao", "LinXiao", any case."""
    return re.compile(r"(?<![A-Za-z])" + r"[\s\-]?".join(re.escape(s) for s in syllables), re.IGNORECASE)


def _extra_syllable(text: str, end: int) -> int:
    """End of one mis-heard syllable glued to (or capitalized after) a name, else ``end``.

    "Lin Xiaoyang" and "Lin Xiao Yang" carry an extra pinyin syllable; "Lin Xiao said" and
    "Lin Xiao's" do not.
    """
    m = re.match(r"[a-z]+(?![A-Za-z'])", text[end:])
    if m and PINYIN_SYLLABLE.match(m.group(0)):
        return end + m.end()
    m = re.match(r"[\s\-]([A-Z][a-z]+)(?![A-Za-z'])", text[end:])
    if m and PINYIN_SYLLABLE.match(m.group(1).lower()):
        return end + m.end()
    return end


def _pinyin_variants(text: str, entry: TermEntry) -> list[tuple[int, int]]:
    """Spans of romanized forms of a name (with a glued extra syllable or a title prefix)."""
    if len(entry.syllables) < 2:
        return []
    spans = []
    takes_title = re.match(TITLES + r"\.?\s", entry.target) is not None
    for m in _core_pattern(entry.syllables).finditer(text):
        if m.end() < len(text) and text[m.end()].isalpha() and _extra_syllable(text, m.end()) == m.end():
            continue  # "Linxiaobao..." is some other word
        start, end = m.start(), _extra_syllable(text, m.end())
        if takes_title:
            t = re.search(TITLES + r"\.?\s+$", text[:start])
            start = t.start() if t else start
        spans.append((start, end))
    return spans


def _title_surname(text: str, entry: TermEntry) -> list[tuple[int, int]]:
    """'President Lu', 'Boss Lu' for a title-form name whose rendering is 'Mr. Lu'."""
    if not (entry.syllables and re.match(TITLES + r"\.?\s", entry.target)):
        return []
    surname = entry.syllables[0]
    pat = re.compile(rf"(?<![A-Za-z]){TITLES}\.?\s+{re.escape(surname)}(?![A-Za-z])", re.IGNORECASE)
    return [(m.start(), m.end()) for m in pat.finditer(text)]


def _fuzzy(text: str, entry: TermEntry) -> list[tuple[int, int]]:
    """Capitalized word runs that sound like the name ("Lin Shao", "Lynn Xiao"), ratio >= 0.8."""
    keys = {re.sub(r"[^a-z]", "", entry.target.lower())}
    if entry.syllables:
        keys.add("".join(entry.syllables))
    n_words = len(entry.target.split())
    spans = []
    for m in re.finditer(rf"(?<![A-Za-z])[A-Z][a-z]+(?:[\s\-][A-Z][a-z]+){{{n_words - 1}}}(?![A-Za-z])", text):
        cand = re.sub(r"[^a-z]", "", m.group(0).lower())
        if any(cand[0] == k[0] and difflib.SequenceMatcher(None, cand, k).ratio() >= FUZZY_RATIO for k in keys):
            spans.append((m.start(), m.end()))
    return spans


def _replace_spans(text: str, spans: list[tuple[int, int]], target: str, rule: str, changes: list[dict]) -> str:
    for start, end in sorted(set(spans), reverse=True):
        before = text[start:end]
        if before == target:
            continue
        changes.append({"rule": rule, "before": before, "after": target})
        text = text[:start] + target + text[end:]
    return text


def post_edit_names(text: str, source: str, table: list[TermEntry]) -> tuple[str, list[dict]]:
    """Replace mis-heard or wrong renderings of bible names by the bible rendering.

    Distinctive romanized forms (two or more syllables, e.g. "Lu Zong") are fixed wherever
    they appear; title+surname forms, forbidden renderings and fuzzy matches only in lines
    whose source contains that name, so an unrelated word is never rewritten.
    """
    changes: list[dict] = []
    for entry in sorted((e for e in table if e.kind == "name"), key=lambda e: -len(e.target)):
        in_source = any(f in source for f in entry.forms)
        text = _replace_spans(text, _pinyin_variants(text, entry), entry.target, "name:pinyin", changes)
        if not in_source:
            continue
        text = _replace_spans(text, _title_surname(text, entry), entry.target, "name:title", changes)
        for bad in entry.forbidden:
            spans = [(m.start(), m.end()) for m in re.finditer(rf"(?<!\w){re.escape(bad)}(?!\w)", text, re.I)]
            text = _replace_spans(text, spans, entry.target, "name:forbidden", changes)
        if not _contains_word(text, entry.target):  # "Lin Xiaow" does not count as "Lin Xiao"
            text = _replace_spans(text, _fuzzy(text, entry), entry.target, "name:fuzzy", changes)
    for c in changes:
        log.info("post-edit %s: %r -> %r", c["rule"], c["before"], c["after"])
    return text, changes


def insert_vocative(text: str, source: str, table: list[TermEntry], language: str) -> tuple[str, list[dict]]:
    """A line that opens by addressing someone ("陆总，...") gets the name back if it was dropped."""
    for entry in (e for e in table if e.kind == "name"):
        form = next((f for f in entry.forms if re.match(re.escape(f) + r"[，,！!。]", source.strip())), None)
        if form is None or _contains(text, entry.target) or not text:
            continue
        if re.match(r"[A-Z][\w.'-]*(?:\s[A-Z][\w.'-]*){0,2},", text):
            return text, []  # already opens with some (other) name: QC flags it, no guessing
        rest = text
        if language.split("-")[0] == "en" and re.match(r"[A-Z][a-z]", rest) and not re.match(r"I\b", rest):
            rest = rest[0].lower() + rest[1:]
        after = f"{entry.target}, {rest}"
        log.info("inserted vocative %r: %r -> %r", entry.target, text, after)
        return after, [{"rule": "name:vocative", "before": text, "after": after}]
    return text, []


# ---------------------------------------------------------------------------- QC


def glossary_violations(cue: int, source: str, target: str, table: list[TermEntry],
                        forbidden: list[str] = ()) -> list[dict]:
    """Problems in one line: a required rendering missing, or a forbidden rendering present."""
    out: list[dict] = []
    for entry in table:
        required = entry.kind in ("name", "term") or entry.protect
        if required and any(f in source for f in entry.forms) and not _contains(target, entry.target):
            out.append({"cue": cue, "term": entry.key, "problem": "missing", "expected": entry.target})
        for bad in entry.forbidden:
            if _contains(target, bad):
                out.append({"cue": cue, "term": entry.key, "problem": "forbidden", "found": bad})
    for bad in forbidden:
        if _contains(target, bad) and not any(v.get("found") == bad for v in out):
            out.append({"cue": cue, "term": "", "problem": "forbidden", "found": bad})
    return out


def violations_per_line(violations: list[dict]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for v in violations:
        counts[v["cue"]] = counts.get(v["cue"], 0) + 1
    return counts
