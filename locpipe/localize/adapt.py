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

from locpipe.config.adaptation import AdaptationConfig, CurrencyRule, SensitiveWord, SensitivityRule
from locpipe.config.loader import load_sensitivity
from locpipe.localize.numbers import (
    decimal_sep,
    money_in_source,
    money_in_target,
    quantities_in_target,
    units_in_source,
)

log = logging.getLogger(__name__)


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
    dec = decimal_sep(language)
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
    def for_market(cls, language: str, config: AdaptationConfig, config_dir: Path | None = None) -> Adapter:
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
