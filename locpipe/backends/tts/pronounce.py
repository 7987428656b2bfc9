"""Names spoken right: what the dub voice says in place of romanized Chinese names.

English front ends read pinyin as English spelling: "Xiao" comes out as "zai-oh" (Whisper
hears "Lin Xiao" as "Linzai"), "Qian" as "kwee-an", "Zhang" as "zang". Subtitles must keep
the pinyin, so the fix lives only on the way into TTS:

1. the series bible's ``say`` per character and language (``say: {en: "Lin Shyao"}``), exact;
2. otherwise, for English voices, an automatic respelling of each pinyin syllable
   (initial + final, ``respell_pinyin``) of the names the bible renders, and of any other
   capitalized word that is pinyin beyond doubt (it starts with x, q or zh, which English
   words never do in that shape).

The respellings are tuned to how espeak-ng's English rules (the front end of Kokoro, Piper
and espeak here) read them: "Xiao" -> "Shee-yow", "Qian" -> "Chee-en", "Zhang" -> "Jahng", "Huang" -> "Hoo-ahng".
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache

log = logging.getLogger(__name__)

#: pinyin initials, longest first (zh/ch/sh before z/c/s)
INITIALS = ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h", "j", "q", "x", "r", "z", "c",
            "s")
#: English spelling of each initial (the rest spell as they are)
INITIAL_SOUNDS = {"zh": "j", "q": "ch", "x": "sh", "c": "ts"}
#: English spelling of each final after an ordinary initial
FINAL_SOUNDS = {
    "a": "ah", "o": "aw", "e": "uh", "ai": "eye", "ei": "ay", "ao": "ow", "ou": "oh", "an": "ahn", "en": "un",
    "ang": "ahng", "eng": "ung", "ong": "oong", "er": "ar", "i": "ee", "in": "in", "ing": "ing", "u": "oo",
    "ua": "wah", "uo": "waw", "uai": "why", "ui": "way", "uan": "wahn", "un": "oon", "uang": "wahng",
    "v": "yoo", "ve": "yweh",
    # after a consonant espeak reads "y" as a vowel ("Shyao" = shy-ow), so i+vowel is "ee-y..."
    "ia": "ee-yah", "iao": "ee-yow", "ian": "ee-en", "iang": "ee-yang", "ie": "ee-eh", "iu": "eo",
    "iong": "ee-oong",
}
#: after j, q, x "u" is ü
_U_AS_UE = {"u": "oo", "ue": "ueh", "uan": "uen", "un": "oon", "in": "een"}
#: after these espeak spells "w" clusters out as letters ("Shw" = S-H-W): "oo-" instead
_NO_W = ("zh", "ch", "sh", "h", "r", "c", "z", "s", "l", "n")
_OO = {"ua": "oo-ah", "uo": "oo-aw", "uai": "oo-eye", "ui": "oo-way", "uan": "oo-ahn", "uang": "oo-ahng"}
#: "i" after the sibilants is a buzzed vowel: "zi" ~ "zuh", "shi" ~ "shur"
_BUZZ = {"z": "zuh", "c": "tsuh", "s": "suh", "zh": "jur", "ch": "chur", "sh": "shur", "r": "rur"}
#: whole syllables spelled with y/w instead of an initial
_Y_W = {"ya": "yah", "yan": "yen", "yang": "yang", "yao": "yow", "ye": "yeh", "yi": "ee", "yin": "yin",
        "ying": "ying", "yong": "yoong", "you": "yo", "yu": "yoo", "yuan": "yuen", "yue": "yoo-eh", "yun": "yoon",
        "wa": "wah", "wai": "why", "wan": "wahn", "wang": "wahng", "wei": "way", "wen": "wun", "weng": "wung",
        "wo": "waw", "wu": "woo"}
#: syllables without an initial (only at the start of a word: pinyin writes "Xi'an" otherwise)
_BARE = ("a", "ai", "an", "ang", "ao", "e", "ei", "en", "eng", "er", "o", "ou")
_J_Q_X = ("i", "ia", "ie", "iao", "iu", "ian", "in", "iang", "ing", "iong", "u", "ue", "uan", "un")
_WORD = re.compile(r"[A-Za-zÀ-ÿüÜ]+(?:[-'][A-Za-zÀ-ÿüÜ]+)*")
_TONES = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜü", "aaaaeeeeiiiioooouuuuvvvvv")


def respell_syllable(initial: str, final: str) -> str:
    """English spelling of one syllable, tuned to espeak-ng's English reading rules."""
    if final == "i" and initial in _BUZZ:
        return _BUZZ[initial]
    if initial in ("j", "q", "x") and final in _U_AS_UE:
        sound = _U_AS_UE[final]
    elif initial in _NO_W and final in _OO:
        sound = _OO[final]
    elif final == "ao" and initial in ("c", "z", "s"):
        sound = "ao"  # "Tsow" reads as tso; "Tsao" as tsau
    else:
        sound = FINAL_SOUNDS[final]
    return INITIAL_SOUNDS.get(initial, initial) + sound


def _syllables() -> dict[str, str]:
    """Every pinyin syllable -> its English respelling (a little generous: "fi" is accepted too)."""
    table: dict[str, str] = {**_Y_W, **{bare: FINAL_SOUNDS[bare] for bare in _BARE}}
    for initial in INITIALS:
        if initial in ("j", "q", "x"):
            finals: tuple[str, ...] = _J_Q_X
        else:  # ü finals (v, ve) only after n and l
            finals = tuple(f for f in FINAL_SOUNDS if not f.startswith("v") or initial in ("n", "l"))
        for final in finals:
            table[initial + final] = respell_syllable(initial, final)
    return table


SYLLABLES: dict[str, str] = _syllables()
#: initials English spelling never starts a word with in this shape: a capitalized word made
#: only of pinyin syllables and starting so is a Chinese name wherever it appears
_SURELY_PINYIN = ("x", "q", "zh")


@lru_cache(maxsize=4096)
def split_pinyin(word: str) -> tuple[str, ...] | None:
    """``word`` as pinyin syllables ("xiaoyu" -> ("xiao", "yu")), or None when it is not pinyin.

    Longest syllable first with backtracking, so "xian" stays one syllable and "xi'an"
    (apostrophe) is two.
    """
    w = word.lower().translate(_TONES)
    parts = [p for p in re.split(r"['\-]", w) if p]
    out: list[str] = []
    for part in parts:
        found = _split(part, first=True)
        if found is None:
            return None
        out += found
    return tuple(out) if out else None


def _split(text: str, first: bool = True) -> list[str] | None:
    if not text:
        return []
    for n in range(min(6, len(text)), 0, -1):
        head = text[:n]
        if head in SYLLABLES and (first or head not in _BARE):
            rest = _split(text[n:], first=False)
            if rest is not None:
                return [head, *rest]
    return None


def respell_pinyin(word: str) -> str | None:
    """English respelling of a pinyin word ("Xiao" -> "Shee-yow", "Zhang" -> "Jahng"), or None if not pinyin."""
    syllables = split_pinyin(word)
    if syllables is None:
        return None
    spelled = "-".join(SYLLABLES[s] for s in syllables) if len(syllables) > 1 else SYLLABLES[syllables[0]]
    return spelled[:1].upper() + spelled[1:] if word[:1].isupper() else spelled


def surely_pinyin(word: str) -> bool:
    """A capitalized word that is pinyin and starts with x, q or zh: a Chinese name, not English."""
    return (word[:1].isupper() and word.lower().startswith(_SURELY_PINYIN) and split_pinyin(word) is not None)


def name_respelling(name: str) -> str:
    """A rendered name with each pinyin word respelled ("Lin Xiao" -> "Lin Shee-yow"; "Mr. Lu" -> "Mr. Loo")."""
    return _WORD.sub(lambda m: respell_pinyin(m.group()) or m.group() if m.group()[:1].isupper() else m.group(),
                     name)


def lexicon_for(names: dict[str, str | None], language: str) -> dict[str, str]:
    """Written form -> spoken form for the names a series uses in ``language``.

    ``names``: rendered name -> the bible's ``say`` for it (None: respell automatically, in
    English only; other languages read pinyin closer to right and keep the name as written).
    Titles ("Mr.", "Sr.") are not pinyin and stay as they are.
    """
    english = language.lower().startswith("en")
    out: dict[str, str] = {}
    for written, say in names.items():
        spoken = say or (name_respelling(written) if english else written)
        if spoken != written:
            out[written] = spoken
    return out


def spoken_text(text: str, lexicon: dict[str, str], language: str) -> str:
    """``text`` as the voice should say it: lexicon names replaced, leftover sure pinyin respelled (English)."""
    out = text
    for written in sorted(lexicon, key=len, reverse=True):
        out = re.sub(rf"(?<!\w){re.escape(written)}(?!\w)", lexicon[written], out)
    if language.lower().startswith("en"):
        out = _WORD.sub(lambda m: respell_pinyin(m.group()) if surely_pinyin(m.group()) else m.group(), out)
    if out != text:
        log.debug("spoken as %r: %r", out, text)
    return out
