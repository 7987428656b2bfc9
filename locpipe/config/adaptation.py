"""``adaptation:`` of a market: currency, units and sensitive words (models only).

The rules that apply them live in ``locpipe.localize.adapt``; the models sit here, with the
other market models, so loading a config never imports a localization module.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from locpipe.config.base import Strict


class CurrencyRule(Strict):
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
    def _rate_for_convert(self) -> CurrencyRule:
        if self.mode == "convert" and self.rate is None:
            raise ValueError("convert mode needs a rate (local currency per yuan)")
        if self.template is not None and "{amount}" not in self.template:
            raise ValueError("template must contain {amount}")
        return self


class SensitiveWord(Strict):
    word: str
    category: str = "profanity"
    #: word: whole word; prefix: the word and its inflections (fuck, fucking); anywhere: substring
    match: Literal["word", "prefix", "anywhere"] = "word"
    action: Literal["flag", "mask", "soften"] = "mask"
    #: milder replacement for the soften action
    soften: str | None = None


class SensitivityList(Strict):
    language: str
    words: list[SensitiveWord] = []


class SensitivityRule(Strict):
    #: what to do with listed words; "per_word" uses each word's own action
    action: Literal["off", "flag", "mask", "soften", "per_word"] = "off"
    categories: list[str] = ["profanity"]
    #: market-specific additions to the language's list
    extra_words: list[SensitiveWord] = []


class AdaptationConfig(Strict):
    """``adaptation:`` in a market YAML (MarketConfig.adaptation)."""

    currency: CurrencyRule = CurrencyRule()
    units: Literal["metric", "imperial", "keep"] = "metric"
    sensitivity: SensitivityRule = SensitivityRule()
