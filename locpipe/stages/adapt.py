"""Market adaptation: money, units and sensitive words, applied after translation.

Deterministic rules, each change logged as ``{cue, rule, before, after}`` for QC, so a
reviewer can see (and a test can pin) exactly what was altered and why.

* **Money.** Amounts in the *source* (五百万, 3万, 1.2亿, 五百万元, 两个亿) are parsed with a
  Chinese numeral parser; the target's rendering of that amount is found and, when its figure
  is wrong (speech translation often writes "500,000" for 五百万) or its currency is not the
  market's, replaced: the yuan in the market's notation ("5 million yuan") or converted at the
  configured rate ("$700,000"). When the counts of amounts in source and target differ, the
  line is only flagged: guessing which number is which would be worse than leaving it.
* **Units.** 斤, 里, 亩 (and 公斤, 公里) become metric or imperial figures the same way.
* **Sensitivity.** Per-language word lists (``configs/sensitivity/<lang>.yaml``); a market
  masks ("f***"), softens (a milder word) or only flags them.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    """Like locpipe.config's: unknown keys are errors. Defined here (not imported) so that
    locpipe.config can import AdaptationConfig for MarketConfig without an import cycle."""

    model_config = ConfigDict(extra="forbid", frozen=True)

# ---------------------------------------------------------------------------- config


class CurrencyRule(_Strict):
    """keep: the yuan, written the market's way; convert: local currency at ``rate`` per yuan."""

    mode: Literal["keep", "convert", "off"] = "keep"
    #: ISO code of the local currency (convert mode), e.g. USD, BRL
    code: str = "CNY"
    #: local currency units per yuan, e.g. 0.14 for USD
    rate: float | None = Field(None, gt=0)
    #: how an amount is written, "{amount}" is the figure; default by currency/language
    template: str | None = None
    #: significant digits kept after conversion (4,213 -> 4,200): converted money is approximate
    significant: int = Field(2, ge=1, le=6)

    @model_validator(mode="after")
    def _rate_for_convert(self) -> "CurrencyRule":
        if self.mode == "convert" and self.rate is None:
            raise ValueError("convert mode needs a rate (local currency per yuan)")
        if self.template is not None and "{amount}" not in self.template:
            raise ValueError("template must contain {amount}")
        return self


class SensitiveWord(_Strict):
    word: str
    category: str = "profanity"
    #: word: whole word; prefix: the word and its inflections (fuck, fucking); anywhere: substring
    match: Literal["word", "prefix", "anywhere"] = "word"
    action: Literal["flag", "mask", "soften"] = "mask"
    #: milder replacement for the soften action
    soften: str | None = None


class SensitivityList(_Strict):
    language: str
    words: list[SensitiveWord] = []


class SensitivityRule(_Strict):
    #: what to do with listed words; "per_word" uses each word's own action
    action: Literal["off", "flag", "mask", "soften", "per_word"] = "off"
    categories: list[str] = ["profanity"]
    #: market-specific additions to the language's list
    extra_words: list[SensitiveWord] = []


class AdaptationConfig(_Strict):
    """``adaptation:`` in a market YAML (MarketConfig.adaptation)."""

    currency: CurrencyRule = CurrencyRule()
    units: Literal["metric", "imperial", "keep"] = "metric"
    sensitivity: SensitivityRule = SensitivityRule()


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
EN_WORDS.update({w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())})
CURRENCY_WORDS = (r"yuans?|yuanes|元|RMB|CNY|renminbi|dollars?|bucks|USD|US\$|reais|real|pesos?|MXN|rupiah|Rp|baht"
                  r"|THB|dirhams?|AED|yen|円|euros?|EUR|R\$|\$|¥|€|يوان|درهم|หยวน|บาท")
UNIT_WORDS = {
    "mass": r"catty|catties|jin|jins|pounds?|lbs?|kilos?|kilograms?|kilogrammes?|kg|quilos?|quilogramas?",
    "length": r"li|miles?|kilometers?|kilometres?|km|quilômetros?|kilómetros?|milhas?|millas?",
    "area": r"mu|acres?|hectares?|hectáreas?|ha|square meters?|square metres?|m²|metros quadrados",
}


def _decimal_sep(language: str) -> str:
    return "." if language.split("-")[0] in ("en", "ja", "ko", "zh", "th", "ar") or language == "es-419" else ","


def _number_re(language: str) -> str:
    base = language.split("-")[0]
    scales = "|".join(sorted((re.escape(s) for s in SCALES.get(base, SCALES["en"])), key=len, reverse=True))
    digits = r"\d{1,3}(?:[,.\u00a0 ]\d{3})+(?:[.,]\d+)?|\d+(?:[.,]\d+)?"
    words = ""
    if base == "en":
        w = "|".join(sorted(EN_WORDS, key=len, reverse=True))
        words = rf"|(?:half\s+a|a|an|(?:{w})(?:[\s-]+(?:{w}|hundred|and))*)(?=\s+(?:hundred|thousand|million|billion)\b)" \
                rf"|(?:{w})(?:[\s-]+(?:{w}|hundred))*"
    return rf"(?P<num>{digits}{words})(?:\s*(?P<scale>(?:hundred\s+)?(?:{scales})))?(?![\w])"


def parse_target_number(num: str, scale: str | None, language: str) -> float | None:
    """A figure as written in the target ("5,000,000", "1,2", "five hundred", "half a") times its scale."""
    base = language.split("-")[0]
    num = num.strip()
    value: float | None
    if re.match(r"\d", num):
        dec = _decimal_sep(language)
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
    pat = re.compile(rf"(?P<pre>(?:{CURRENCY_WORDS})\s?)?{_number_re(language)}(?P<post>\s*(?:{CURRENCY_WORDS})(?!\w))?",
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


# ---------------------------------------------------------------------------- formatting

SCALE_WORDS = {  # (singular, plural) for millions and billions
    "en": (("million", "million"), ("billion", "billion")),
    "pt": (("milhão", "milhões"), ("bilhão", "bilhões")),
    "es": (("millón", "millones"), ("mil millones", "mil millones")),
    "id": (("juta", "juta"), ("miliar", "miliar")),
    "fr": (("million", "millions"), ("milliard", "milliards")),
    "de": (("Million", "Millionen"), ("Milliarde", "Milliarden")),
}
KEEP_TEMPLATES = {"en": "{amount} yuan", "pt": "{amount} yuans", "es": "{amount} yuanes", "id": "{amount} yuan",
                  "fr": "{amount} yuans", "de": "{amount} Yuan", "ar": "{amount} يوان", "th": "{amount} หยวน",
                  "ja": "{amount}元", "ko": "{amount}위안"}
CURRENCY_TEMPLATES = {"USD": "${amount}", "BRL": "R$ {amount}", "MXN": "${amount} MXN", "IDR": "Rp {amount}",
                      "THB": "{amount} baht", "AED": "{amount} AED", "JPY": "{amount}円", "EUR": "€{amount}",
                      "CNY": "{amount} yuan", "KRW": "{amount}원"}


def _digits(value: float, language: str) -> str:
    dec = _decimal_sep(language)
    thousands = "," if dec == "." else "."
    whole = f"{value:,.2f}".rstrip("0").rstrip(".")
    return whole.replace(",", "\x00").replace(".", dec).replace("\x00", thousands)


def format_amount(value: float, language: str) -> str:
    """5000000 -> "5 million" (en) / "5 milhões" (pt); 30000 -> "30,000" / "30.000"."""
    base = language.split("-")[0]
    words = SCALE_WORDS.get(base)
    for power, idx in ((1e9, 1), (1e6, 0)):
        if words and value >= power and round(value / power, 2) * power == round(value, 0):
            n = value / power
            singular, plural = words[idx]
            return f"{_digits(n, language)} {singular if n < 2 else plural}"
    return _digits(value, language)


def round_significant(value: float, digits: int) -> float:
    if value <= 0:
        return value
    magnitude = 10 ** (math.floor(math.log10(value)) - digits + 1)
    return round(value / magnitude) * magnitude if magnitude >= 1 else round(value, 2)


def render_money(yuan: float, language: str, rule: CurrencyRule) -> str:
    base = language.split("-")[0]
    if rule.mode == "convert":
        value = round_significant(yuan * (rule.rate or 1), rule.significant)
        template = rule.template or CURRENCY_TEMPLATES.get(rule.code.upper(), "{amount} " + rule.code.upper())
    else:
        value = yuan
        template = rule.template or KEEP_TEMPLATES.get(base, "{amount} CNY")
    amount = format_amount(value, language)
    words = SCALE_WORDS.get(base, ())
    if base in ("pt", "es", "fr") and template.startswith("{amount} ") and any(
            amount.endswith(w) for pair in words for w in pair):
        amount += " de"  # "5 milhões de yuans", "5 millones de yuanes"
    return template.replace("{amount}", amount)


UNIT_CONVERSIONS = {  # source unit -> (kind, metric factor + unit, imperial factor + unit)
    "斤": ("mass", (0.5, "kg"), (1.10231, "pounds")),
    "公斤": ("mass", (1.0, "kg"), (2.20462, "pounds")),
    "里": ("length", (0.5, "km"), (0.310686, "miles")),
    "公里": ("length", (1.0, "km"), (0.621371, "miles")),
    "亩": ("area", (666.67, "m²"), (0.164737, "acres")),
}


def render_quantity(value: float, unit: str, system: str, language: str = "en") -> tuple[float, str]:
    _kind, metric, imperial = UNIT_CONVERSIONS[unit]
    factor, name = metric if system == "metric" else imperial
    out = value * factor
    if name == "m²" and out >= 10000:
        out, name = out / 10000, "hectares"
    out = round(out, 1) if out < 10 else round(out)
    return out, f"{_digits(out, language)} {name}"


# ---------------------------------------------------------------------------- rules


def _change(cue: int, rule: str, before: str, after: str) -> dict:
    return {"cue": cue, "rule": rule, "before": before, "after": after}


def _splice(text: str, spans: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(spans, reverse=True):
        text = text[:start] + new + text[end:]
    return text


def adapt_money(cue: int, source: str, text: str, language: str, rule: CurrencyRule) -> tuple[str, list[dict]]:
    if rule.mode == "off":
        return text, []
    amounts = money_in_source(source)
    if not amounts:
        return text, []
    found = money_in_target(text, language)
    if len(found) != len(amounts):
        return text, [_change(cue, "money:unmatched", text, text)
                      | {"detail": f"source amounts {[a.text for a in amounts]}, target figures "
                                   f"{[f.text for f in found]}: left as is"}]
    changes, spans = [], []
    for amount, fig in zip(amounts, found, strict=True):
        wanted = render_money(amount.value, language, rule)
        value_ok = math.isclose(fig.value, amount.value, rel_tol=0.01)
        currency_ok = bool(fig.currency) and fig.currency.lower().rstrip("s") in wanted.lower()
        if rule.mode == "keep" and value_ok and currency_ok:
            continue
        name = "money:convert" if rule.mode == "convert" else ("money:fix" if not value_ok else "money:currency")
        changes.append(_change(cue, name, fig.text, wanted) | {"source": amount.text})
        spans.append((fig.start, fig.end, wanted))
    return _splice(text, spans), changes


def adapt_units(cue: int, source: str, text: str, language: str, system: str) -> tuple[str, list[dict]]:
    if system == "keep":
        return text, []
    changes, spans = [], []
    for value, unit, src_text in units_in_source(source):
        kind = UNIT_CONVERSIONS[unit][0]
        found = [f for f in quantities_in_target(text, language, kind) if all(f.start >= e or f.end <= s
                                                                               for s, e, _ in spans)]
        if len(found) != 1:
            changes.append(_change(cue, "units:unmatched", text, text) | {"source": src_text})
            continue
        out_value, wanted = render_quantity(value, unit, system, language)
        fig = found[0]
        if fig.text.lower() == wanted.lower():
            continue
        changes.append(_change(cue, f"units:{system}", fig.text, wanted) | {"source": src_text})
        spans.append((fig.start, fig.end, wanted))
    return _splice(text, spans), changes


def load_sensitivity(language: str, config_dir: Path | None = None) -> SensitivityList:
    """The word list for a language (exact tag, then base); an empty list when none ships."""
    from locpipe.config import DEFAULT_CONFIG_DIR, _read_yaml, _validate

    folder = (config_dir or DEFAULT_CONFIG_DIR) / "sensitivity"
    for name in (language, language.split("-")[0].lower()):
        path = folder / f"{name}.yaml"
        if path.is_file():
            data = _read_yaml(path)
            data.setdefault("language", name)
            return _validate(SensitivityList, path, data)  # type: ignore[return-value]
    return SensitivityList(language=language)


def mask(word: str) -> str:
    return word[0] + "*" * (len(word) - 1) if len(word) > 1 else "*"


def _word_pattern(w: SensitiveWord) -> re.Pattern:
    core = re.escape(w.word)
    if w.match == "anywhere":
        return re.compile(r"\w*" + core + r"\w*", re.IGNORECASE)
    tail = r"\w*" if w.match == "prefix" else ""
    return re.compile(rf"(?<!\w){core}{tail}(?!\w)", re.IGNORECASE)


def adapt_sensitivity(cue: int, text: str, words: list[SensitiveWord], rule: SensitivityRule) -> tuple[str, list[dict]]:
    if rule.action == "off":
        return text, []
    changes: list[dict] = []
    for w in words:
        if w.category not in rule.categories:
            continue
        action = w.action if rule.action == "per_word" else rule.action
        if action == "soften" and not w.soften:
            action = "mask"

        def sub(m: re.Match, w=w, action=action) -> str:
            found = m.group(0)
            if action == "flag":
                after = found
            elif action == "mask":
                after = mask(found)
            else:
                after = w.soften if not found[:1].isupper() else w.soften[:1].upper() + w.soften[1:]
            changes.append(_change(cue, f"sensitivity:{action}", found, after) | {"category": w.category})
            return after

        text = _word_pattern(w).sub(sub, text)
    return text, changes


@dataclass(frozen=True)
class Adapter:
    """Rules for one market language, with its word list loaded once."""

    language: str
    config: AdaptationConfig
    words: tuple[SensitiveWord, ...] = ()

    @classmethod
    def for_market(cls, language: str, config: AdaptationConfig, config_dir: Path | None = None) -> "Adapter":
        words: tuple[SensitiveWord, ...] = ()
        if config.sensitivity.action != "off":
            words = tuple(load_sensitivity(language, config_dir).words) + tuple(config.sensitivity.extra_words)
        return cls(language, config, words)

    def adapt_line(self, cue: int, source: str, text: str) -> tuple[str, list[dict]]:
        changes: list[dict] = []
        for step in (lambda t: adapt_money(cue, source, t, self.language, self.config.currency),
                     lambda t: adapt_units(cue, source, t, self.language, self.config.units),
                     lambda t: adapt_sensitivity(cue, t, list(self.words), self.config.sensitivity)):
            text, more = step(text)
            changes += more
        for c in changes:
            log.info("adapt cue %s %s: %r -> %r", c["cue"], c["rule"], c["before"], c["after"])
        return text, changes
