"""Series bible: how one series' characters, honorifics and terms are rendered per language.

A series of 80 episodes must call the same character the same thing in every episode and
every market, whichever translation backend ran. The bible is the single source of those
decisions (``configs/series/<series>.yaml`` or a YAML beside the series): term protection
(``locpipe.localize.terms``) enforces it before/after machine translation, the LLM backend
reads it as context, and QC counts lines that break it. Validated like market configs: a bad
file fails at load with the file, the key and the reason.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from locpipe.config import read_yaml, validate

#: a language key: BCP-47-ish ("en", "pt-BR", "es-419") or "default" (any language not listed)
LANG_KEY_RE = re.compile(r"^(default|[a-z]{2,3}(-[A-Za-z0-9]{2,8})?)$")
HAN_RE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff]")
#: the placeholder in honorific patterns, e.g. "<surname>总"
SURNAME_SLOT = "<surname>"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_lang_map(value: dict[str, object]) -> dict[str, object]:
    for key, text in value.items():
        if not LANG_KEY_RE.match(key):
            raise ValueError(f"{key!r} is not a language code (e.g. en, pt-BR, es-419, or default)")
        if isinstance(text, str) and not text.strip():
            raise ValueError(f"empty rendering for {key!r}")
    return value


def for_language(mapping: dict[str, str], language: str) -> str | None:
    """The entry for a BCP-47 tag: exact ("pt-BR"), then base ("pt"), then "default"."""
    if language in mapping:
        return mapping[language]
    base = language.split("-")[0].lower()
    return mapping.get(base, mapping.get("default"))


def _forbidden_for(mapping: dict[str, list[str]], language: str) -> list[str]:
    base = language.split("-")[0].lower()
    return list(dict.fromkeys(mapping.get(language, []) + (mapping.get(base, []) if base != language else [])))


class Character(_Strict):
    """A named person. ``render`` is what every market in that language calls them."""

    render: dict[str, str]
    gender: Literal["female", "male", "other", "unknown"] = "unknown"
    age: int | str | None = None
    role: str = ""
    #: other Chinese forms of the same person (nicknames, full name), rendered the same way
    aliases: list[str] = []
    #: voice per market code, e.g. {us: "piper:en_US-joe-medium"}
    voice: dict[str, str] = {}
    #: romanization used to find mis-heard forms in speech-based English ("lin xiao");
    #: default: pypinyin of the Chinese name
    pinyin: str | None = None
    #: renderings that must not appear for this person, per language
    forbidden: dict[str, list[str]] = {}
    #: how the dub voice says the name, per language ({en: "Lin Shyao"}); used only by TTS,
    #: subtitles keep ``render``. Default: an English respelling of the pinyin (TTS only)
    say: dict[str, str] = {}

    @field_validator("render")
    @classmethod
    def _render(cls, v: dict[str, str]) -> dict[str, str]:
        if not v:
            raise ValueError("needs at least one rendering, e.g. {en: Lin Xiao}")
        return _check_lang_map(v)  # type: ignore[return-value]

    @field_validator("say")
    @classmethod
    def _say(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_lang_map(v)  # type: ignore[return-value]

    @field_validator("forbidden")
    @classmethod
    def _forbidden_langs(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_lang_map(v)  # type: ignore[return-value]


class Honorific(_Strict):
    """A kinship term or title (哥, 姐, 总裁, 王爷, 夫人, or a pattern "<surname>总").

    ``render`` is a fixed rendering; it is enforced (placeholder + QC) only when ``protect``
    is set, because most kinship terms change with who speaks to whom (姐 -> "sis" when
    addressing her, "my sister" when talking about her): ``policy`` tells translators and the
    LLM backend which to use. In a pattern, ``{surname}`` in the rendering is the surname's
    romanization ("<surname>总" -> "Mr. {surname}" -> "Mr. Lu").
    """

    render: dict[str, str] = {}
    policy: dict[str, str] = {}
    protect: bool = False

    @field_validator("render", "policy")
    @classmethod
    def _langs(cls, v: dict[str, str]) -> dict[str, str]:
        return _check_lang_map(v)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _something(self) -> Honorific:
        if not self.render and not self.policy:
            raise ValueError("needs a render or a policy")
        if self.protect and not self.render:
            raise ValueError("protect: true needs a render")
        return self


class Term(_Strict):
    """A glossary term (合同 -> contract). Protected by placeholder unless ``protect: false``."""

    render: dict[str, str]
    forbidden: dict[str, list[str]] = {}
    protect: bool = True
    note: str = ""

    @field_validator("render", "forbidden")
    @classmethod
    def _langs(cls, v: dict) -> dict:
        return _check_lang_map(v)  # type: ignore[return-value]


def _chinese_key(key: str) -> str:
    if not HAN_RE.search(key.replace(SURNAME_SLOT, "")):
        raise ValueError(f"{key!r} has no Chinese characters (keys are the source-language form)")
    return key


class SeriesBible(_Strict):
    series: str = ""
    source_language: str = "zh"
    characters: dict[str, Character] = {}
    honorifics: dict[str, Honorific] = {}
    glossary: dict[str, Term] = {}
    #: renderings that must not appear at all, per language (e.g. en: [Boss Lu])
    forbidden: dict[str, list[str]] = {}
    notes: list[str] = []
    #: "local-only": the series' text and audio never go to a remote backend (pre-release
    #: content, EU data rules), whatever the market allows
    data_policy: Literal["any", "local-only"] = "any"

    @field_validator("characters", "honorifics", "glossary")
    @classmethod
    def _keys(cls, v: dict) -> dict:
        for key in v:
            _chinese_key(key)
        return v

    @field_validator("forbidden")
    @classmethod
    def _forbidden_langs(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _check_lang_map(v)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _unique_forms(self) -> SeriesBible:
        """One Chinese form means one thing: a name cannot also be a glossary term or alias twice."""
        seen: dict[str, str] = {}
        forms = [(k, f"characters.{k}") for k in self.characters]
        forms += [(a, f"characters.{k}.aliases") for k, c in self.characters.items() for a in c.aliases]
        forms += [(k, f"glossary.{k}") for k in self.glossary]
        forms += [(k, f"honorifics.{k}") for k in self.honorifics]
        for form, where in forms:
            if form in seen:
                raise ValueError(f"{form!r} is defined twice ({seen[form]} and {where})")
            seen[form] = where
        for key, char in self.characters.items():
            for lang, bad in char.forbidden.items():
                good = for_language(char.render, lang)
                if good and good in bad:
                    raise ValueError(f"characters.{key}: {good!r} is both the rendering and forbidden for {lang}")
        return self

    # ------------------------------------------------------------------ views

    @property
    def version(self) -> str:
        """Content hash: part of translation-memory keys and stage cache keys.

        ``say`` (TTS pronunciation) is left out: it changes no translation, so adding one must
        not orphan the translation memory (the synthesize key carries it instead).
        """
        dump = self.model_dump(mode="json", exclude={"characters": {"__all__": {"say"}}})
        dump.pop("data_policy", None)  # where text may go changes no translation either
        payload = json.dumps(dump, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def forbidden_for(self, language: str) -> list[str]:
        return _forbidden_for(self.forbidden, language)

    def summary(self, language: str) -> dict:
        """What a translator (or the LLM backend) needs for one language, compactly."""
        names = {zh: for_language(c.render, language) for zh, c in self.characters.items()}
        for zh, c in self.characters.items():
            for alias in c.aliases:
                names[alias] = names[zh]
        people = {zh: {"gender": c.gender, "role": c.role} for zh, c in self.characters.items() if c.role
                  or c.gender != "unknown"}
        return {
            "names": {k: v for k, v in names.items() if v},
            "people": people,
            "honorifics": {k: (for_language(h.policy, language) or for_language(h.render, language))
                           for k, h in self.honorifics.items()
                           if for_language(h.policy, language) or for_language(h.render, language)},
            "glossary": {k: r for k, t in self.glossary.items() if (r := for_language(t.render, language))},
            "forbidden": self.forbidden_for(language),
            "notes": list(self.notes),
        }


def load_bible(path: Path) -> SeriesBible:
    """Load and validate a bible; errors name the file, the key and the reason (ConfigError)."""
    return validate(SeriesBible, path, read_yaml(path))  # type: ignore[return-value]


def find_bible(series_dir: Path, config_dir: Path | None = None) -> Path | None:
    """``<series>/bible.yaml`` or ``<series>/series.yaml``, else ``configs/series/<dir name>.yaml``."""
    for name in ("bible.yaml", "series.yaml"):
        if (series_dir / name).is_file():
            return series_dir / name
    if config_dir is not None and (config_dir / "series" / f"{series_dir.name}.yaml").is_file():
        return config_dir / "series" / f"{series_dir.name}.yaml"
    return None


