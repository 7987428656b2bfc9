"""Numbers in dialogue: Chinese numerals and amounts in the source, figures in the translation.

The parsing half of market adaptation (``locpipe.localize.adapt`` decides and rewrites):
五百万, 3万, 1.2亿, 两个亿 and 斤/里/亩 in the source; "500,000 yuan", "R$ 3,5 milhões",
"five hundred" in the target, per language's decimal separator and scale words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# ---------------------------------------------------------------------------- Chinese numerals

CN_DIGITS = {"零": 0, "〇": 0, "一": 1, "壹": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3, "四": 4, "肆": 4,
             "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7, "八": 8, "捌": 8, "九": 9, "玖": 9}
CN_SMALL = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1000, "仟": 1000}
CN_BIG = {"亿": 10**8, "万": 10**4}
_NUM_CHARS = "0-9.点" + "".join(CN_DIGITS) + "".join(CN_SMALL) + "".join(CN_BIG)


def _clean(value: float) -> int | float:
    return int(value) if float(value).is_integer() else round(value, 6)


def _parse_small(s: str) -> float:
    """Below 万: "3", "1.5", "五百", "三千五" (colloquial 3500), "十五", "一点二"."""
    if not s:
        return 0
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", s):
        return float(s)
    if "点" in s:
        whole, frac = s.split("点", 1)
        digits = "".join(str(CN_DIGITS[c]) for c in frac if c in CN_DIGITS)
        return _parse_small(whole) + (float("0." + digits) if digits else 0)
    if re.fullmatch(r"[0-9.]+[十百千]", s):
        return float(s[:-1]) * CN_SMALL[s[-1]]
    total, digit, last_unit = 0.0, None, 1
    for ch in s:
        if ch in CN_DIGITS:
            digit = CN_DIGITS[ch]
        elif ch in CN_SMALL:
            unit = CN_SMALL[ch]
            total += (1 if digit is None else digit) * unit
            digit, last_unit = None, unit
        elif ch.isdigit():
            digit = int(ch)
        else:
            raise ValueError(f"not a numeral: {s!r}")
    if digit is not None:
        # 三千五 = 3500: a trailing digit after a unit counts in the next lower unit
        total += digit * (last_unit // 10 if last_unit >= 100 and s[-2] not in "零〇" else 1)
    return total


def parse_chinese_number(text: str) -> int | float:
    """五百万 -> 5000000, 3万 -> 30000, 1.2亿 -> 120000000, 一亿五千万 -> 150000000, 三万五 -> 35000.

    Raises ValueError for text that is not a numeral.
    """
    s = text.replace(",", "").replace("，", "").strip()
    if not s:
        raise ValueError("empty numeral")
    for big, factor in (("亿", 10**8), ("万", 10**4)):
        if big in s:
            head, tail = s.split(big, 1)
            value = (_parse_small_or_big(head) if head else 1) * factor
            if tail:
                # 三万五 = 35000 (a lone trailing digit is in the next lower unit); 一亿五千万 = 150000000
                if len(tail) == 1 and tail in CN_DIGITS:
                    value += CN_DIGITS[tail] * factor // 10
                else:
                    value += parse_chinese_number(tail.lstrip("零〇"))
            return _clean(value)
    return _clean(_parse_small(s))


def _parse_small_or_big(s: str) -> float:
    return float(parse_chinese_number(s))


# ---------------------------------------------------------------------------- source amounts

CURRENCY_AFTER = r"(?:块钱|元钱|元|块|人民币|RMB|rmb)"
COUNTERS = "人个年次天名倍斤里亩字件只条部集张本辆台家户岁分秒号层楼周月日期米克吨平套股票份句步"
_AMOUNT_RE = re.compile(rf"(?P<pre>[¥￥]|人民币)?(?P<num>[0-9一二两三四五六七八九十][{_NUM_CHARS},]*)"
                        rf"(?P<after>{CURRENCY_AFTER})?")
_UNIT_RE = re.compile(rf"(?P<num>[0-9一二两三四五六七八九十半][{_NUM_CHARS}]*)(?P<unit>公斤|公里|斤|亩|里)(?![面边头])")


@dataclass(frozen=True)
class SourceAmount:
    value: float
    text: str


def money_in_source(source: str) -> list[SourceAmount]:
    """Money amounts in a Chinese line: a currency marker, or a 万/亿 figure not counting things."""
    text = re.sub(rf"(?<=[{_NUM_CHARS}])个(?=[万亿])", "", source)  # 两个亿 = 两亿
    out = []
    for m in _AMOUNT_RE.finditer(text):
        num = m.group("num").rstrip(",.点")
        following = text[m.end():m.end() + 1]
        is_money = bool(m.group("pre") or m.group("after")) or (
            re.search("[万亿]", num) is not None and (not following or following not in COUNTERS))
        if not is_money:
            continue
        try:
            out.append(SourceAmount(float(parse_chinese_number(num)), m.group(0)))
        except (ValueError, KeyError):
            continue
    return out


def units_in_source(source: str) -> list[tuple[float, str, str]]:
    """(value, unit, text) for 斤/里/亩/公斤/公里 quantities."""
    out = []
    for m in _UNIT_RE.finditer(source):
        num = m.group("num")
        try:
            value = 0.5 if num == "半" else float(parse_chinese_number(num.replace("半", "")))
            value += 0.5 if num.endswith("半") and num != "半" else 0
        except (ValueError, KeyError):
            continue
        out.append((value, m.group("unit"), m.group(0)))
    return out


# ---------------------------------------------------------------------------- target numbers

SCALES = {
    "en": {"thousand": 1e3, "k": 1e3, "grand": 1e3, "million": 1e6, "m": 1e6, "mn": 1e6, "billion": 1e9, "bn": 1e9},
    "pt": {"mil": 1e3, "milhão": 1e6, "milhões": 1e6, "bilhão": 1e9, "bilhões": 1e9},
    "es": {"mil": 1e3, "millón": 1e6, "millones": 1e6, "mil millones": 1e9},
    "id": {"ribu": 1e3, "juta": 1e6, "miliar": 1e9},
    "fr": {"mille": 1e3, "million": 1e6, "millions": 1e6, "milliard": 1e9, "milliards": 1e9},
    "de": {"tausend": 1e3, "million": 1e6, "millionen": 1e6, "milliarde": 1e9, "milliarden": 1e9},
}
EN_WORDS = {w: i for i, w in enumerate("zero one two three four five six seven eight nine ten eleven twelve thirteen "
                                       "fourteen fifteen sixteen seventeen eighteen nineteen".split())}
EN_WORDS.update({w: 10 * (i + 2)
                 for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())})
CURRENCY_WORDS = (r"yuans?|yuanes|元|RMB|CNY|renminbi|dollars?|bucks|USD|US\$|reais|real|pesos?|MXN|rupiah|Rp|baht"
                  r"|THB|dirhams?|AED|yen|円|euros?|EUR|R\$|\$|¥|€|يوان|درهم|หยวน|บาท")
UNIT_WORDS = {
    "mass": r"catty|catties|jin|jins|pounds?|lbs?|kilos?|kilograms?|kilogrammes?|kg|quilos?|quilogramas?",
    "length": r"li|miles?|kilometers?|kilometres?|km|quilômetros?|kilómetros?|milhas?|millas?",
    "area": r"mu|acres?|hectares?|hectáreas?|ha|square meters?|square metres?|m²|metros quadrados",
}


def decimal_sep(language: str) -> str:
    return "." if language.split("-")[0] in ("en", "ja", "ko", "zh", "th", "ar") or language == "es-419" else ","


def _number_re(language: str) -> str:
    base = language.split("-")[0]
    scales = "|".join(sorted((re.escape(s) for s in SCALES.get(base, SCALES["en"])), key=len, reverse=True))
    digits = r"\d{1,3}(?:[,.\u00a0 ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
    words = ""
    if base == "en":
        w = "|".join(sorted(EN_WORDS, key=len, reverse=True))
        words = (rf"|(?:half\s+a|a|an|(?:{w})(?:[\s-]+(?:{w}|hundred|and))*)"
                 rf"(?=\s+(?:hundred|thousand|million|billion)\b)"
                 rf"|(?:{w})(?:[\s-]+(?:{w}|hundred))*")
    return rf"(?P<num>{digits}{words})(?:\s*(?P<scale>(?:hundred\s+)?(?:{scales})))?(?![\w])"


def parse_target_number(num: str, scale: str | None, language: str) -> float | None:
    """A figure as written in the target ("5,000,000", "1,2", "five hundred", "half a") times its scale."""
    base = language.split("-")[0]
    num = num.strip()
    value: float | None
    if re.match(r"\d", num):
        dec = decimal_sep(language)
        thousands = "," if dec == "." else "."
        cleaned = num.replace("\u00a0", "").replace(" ", "")
        if re.fullmatch(rf"\d{{1,3}}(?:{re.escape(thousands)}\d{{3}})+(?:{re.escape(dec)}\d+)?", cleaned) \
                or dec not in cleaned:
            cleaned = cleaned.replace(thousands, "")
        value = float(cleaned.replace(dec, "."))
    else:
        value = _english_words(num.lower())
    if value is None:
        return None
    if scale:
        scale = scale.lower()
        if scale.startswith("hundred"):
            value *= 100
            scale = scale.split(None, 1)[1]
        value *= SCALES.get(base, SCALES["en"]).get(scale, 1)
    return value


def _english_words(text: str) -> float | None:
    if text.replace(" ", "") in ("halfa",):
        return 0.5
    if text in ("a", "an"):
        return 1
    total, current = 0, 0
    for word in re.split(r"[\s-]+", text):
        if word == "and":
            continue
        if word in EN_WORDS:
            current += EN_WORDS[word]
        elif word == "hundred":
            current = (current or 1) * 100
        else:
            return None
    return float(total + current)


@dataclass(frozen=True)
class TargetNumber:
    start: int
    end: int
    value: float
    text: str
    currency: str = ""


def money_in_target(text: str, language: str) -> list[TargetNumber]:
    """Figures in the translation that can be money: with a currency, a scale word, or >= 1000."""
    pat = re.compile(rf"(?P<pre>(?:{CURRENCY_WORDS})\s?)?{_number_re(language)}"
                     rf"(?P<post>\s*(?:{CURRENCY_WORDS})(?!\w))?",
                     re.IGNORECASE)
    out = []
    for m in pat.finditer(text):
        value = parse_target_number(m.group("num"), m.group("scale"), language)
        if value is None:
            continue
        currency = (m.group("pre") or m.group("post") or "").strip()
        if currency or m.group("scale") or value >= 1000:
            out.append(TargetNumber(m.start(), m.end(), value, m.group(0), currency))
    return out


def quantities_in_target(text: str, language: str, kind: str) -> list[TargetNumber]:
    pat = re.compile(rf"{_number_re(language)}[\s-]*(?P<unit>{UNIT_WORDS[kind]})(?!\w)", re.IGNORECASE)
    out = []
    for m in pat.finditer(text):
        value = parse_target_number(m.group("num"), m.group("scale"), language)
        if value is not None:
            out.append(TargetNumber(m.start(), m.end(), value, m.group(0), m.group("unit")))
    return out
