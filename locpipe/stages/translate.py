"""Translate: target-language text for every source cue, one-to-one.

``translate_episode`` adds the series bible (term protection, name post-editing, glossary
check), the translation memory and the market's adaptation rules around the backend;
``translate_transcript`` is the bare backend call.

Backend output is treated as untrusted data: control characters and line breaks are
flattened, and CJK characters that leak into a non-CJK language are removed and recorded
(Whisper sometimes answers a short clip in Chinese). The backend can never add or drop lines:
a count mismatch is an error.
"""

from __future__ import annotations

import logging
import os
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import replace

from locpipe.artifacts import Cue, QCCheck, Transcript, TranslatedCue, Translation
from locpipe.backends.mt.base import TranslationBackend, TranslationRequest
from locpipe.errors import StageError
from locpipe.localize.adapt import AdaptationConfig, Adapter
from locpipe.localize.bible import SeriesBible, for_language
from locpipe.localize.sanitize import clean_for_language
from locpipe.localize.terms import (
    Restored,
    glossary_violations,
    insert_vocative,
    post_edit_names,
    protect,
    restore,
    term_table,
    violations_per_line,
)
from locpipe.localize.tm import TranslationMemory, keys_for_lines

log = logging.getLogger(__name__)

#: Han, Hiragana/Katakana, Hangul, CJK punctuation and full-width forms
CJK_RE = re.compile(r"[\u3000-\u303f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")
CJK_LANGUAGES = {"zh", "ja", "ko"}


def clean_text(text: str) -> str:
    """Flatten whitespace and drop control/format characters a backend may return."""
    text = "".join(" " if unicodedata.category(ch) in ("Cc", "Zl", "Zp") else ch for ch in text)
    return re.sub(r"\s+", " ", text).strip()


def remove_cjk(text: str) -> str:
    return re.sub(r"\s+", " ", CJK_RE.sub(" ", text)).strip()


def build_translation(transcript: Transcript, texts: list[str], language: str, backend_name: str) -> Translation:
    if len(texts) != len(transcript.cues):
        raise StageError("translate", f"{backend_name} returned {len(texts)} lines for {len(transcript.cues)} cues")
    base = language.split("-")[0].lower()
    notes: list[str] = []
    cues: list[TranslatedCue] = []
    for cue, raw in zip(transcript.cues, texts, strict=True):
        clean = clean_for_language(raw, cue.end - cue.start, language)  # bounded, no markup/bidi (issue 17)
        text = clean.text
        notes += [f"cue {cue.index}: {clean.problem}"] if clean.problem else []
        if base not in CJK_LANGUAGES and CJK_RE.search(text):
            notes.append(f"cue {cue.index}: removed CJK characters from {text!r}")
            text = remove_cjk(text)
        if not text:
            notes.append(f"cue {cue.index}: untranslated ({cue.text!r})")
        cues.append(TranslatedCue(index=cue.index, start=cue.start, end=cue.end, source_text=cue.text,
                                  text=text, speaker=cue.speaker))
    return Translation(language=language, backend=backend_name, cues=cues, notes=notes)


def translate_transcript(
    transcript: Transcript, language: str, backend: TranslationBackend, audio_16k=None
) -> Translation:
    request = TranslationRequest(cues=transcript.cues, source_lang=transcript.language, target_lang=language,
                                 audio_16k=audio_16k)
    texts = backend.translate(request) if transcript.cues else []
    translation = build_translation(transcript, texts, language, backend.name)
    for note in translation.notes:
        log.warning("translate %s: %s", language, note)
    return translation


# ---------------------------------------------------------------------------- with bible, TM, adaptation


def _request(transcript: Transcript, language: str, cues: list[Cue], audio_16k, context: dict | None):
    return TranslationRequest(cues=cues, source_lang=transcript.language, target_lang=language,
                              audio_16k=audio_16k, context=context)


def _run_backend(backend: TranslationBackend, request: TranslationRequest) -> list[str]:
    texts = backend.translate(request) if request.cues else []
    if len(texts) != len(request.cues):
        raise StageError("translate", f"{backend.name} returned {len(texts)} lines for {len(request.cues)} cues")
    return texts


def uses_speakers(backend: TranslationBackend) -> bool:
    """Whether the backend's prompt says who speaks each line (the ``llm``/``local-llm`` scene
    prompts): only then do the speaker labels and their characters change its answer."""
    return backend.term_mode == "context"


#: backends whose prompt is not given the speakers' names unless ``LOCPIPE_SPEAKER_NAMES=on``:
#: measured with the packaged 1.5B model (benchmarks/translate_speakers.py, README), names
#: lowered chrF++ (64-line reference set 42.4 -> 40.9, sample 63.2 -> 61.0) by setting off
#: shifted answers
NAMES_HURT = frozenset({"local-llm"})


def names_speakers(backend: TranslationBackend, setting: str | None = None) -> bool:
    """Whether the pipeline gives ``backend`` the speakers' characters (``speaker_context``).

    ``setting`` (default ``LOCPIPE_SPEAKER_NAMES``): "on", "off", or "auto" (every
    speaker-aware backend but those in ``NAMES_HURT``).
    """
    value = (setting if setting is not None else os.environ.get("LOCPIPE_SPEAKER_NAMES", "auto")).strip().lower()
    if value not in ("on", "off", "auto"):
        raise StageError("translate", f"LOCPIPE_SPEAKER_NAMES={value!r}: use on, off or auto")
    return uses_speakers(backend) and (value == "on" or (value == "auto" and backend.name not in NAMES_HURT))


def speaker_context(links: Mapping[str, str], bible: SeriesBible | None, language: str, *,
                    genders: bool = False) -> dict:
    """Who speaks, for an LLM prompt: label -> the linked bible character's name in ``language``
    ("speaker_names": the prompt says ``S1 = Lin Xiao``) and, when it differs, in English
    ("speaker_names_pivot", for the zh -> en step of a pivot through English).

    ``links``: label -> bible character key (``localize.voices.episode_links``). A label that
    is not linked, or whose character the bible no longer has or cannot name in the language
    (nor in English), is absent: the prompt keeps the label. ``genders`` adds the bible's
    gender of each named speaker ("speaker_genders": label -> "female"/"male"), for pronouns.
    """
    if bible is None:
        return {}
    names: dict[str, str] = {}
    pivot: dict[str, str] = {}
    gender: dict[str, str] = {}
    for label, key in sorted(links.items()):
        char = bible.characters.get(key)
        if char is None:  # a voices.yaml mapping to a character the bible no longer has
            continue
        english = for_language(char.render, "en")
        here = for_language(char.render, language) or english
        if here:
            names[label] = here
            if genders and char.gender in ("female", "male"):
                gender[label] = char.gender
        if english:
            pivot[label] = english
    out: dict = {"speaker_names": names} if names else {}
    if pivot and pivot != names:
        out["speaker_names_pivot"] = pivot
    if gender:
        out["speaker_genders"] = gender
    return out


def speaker_prefix(who: Mapping[str, Mapping[str, str]]) -> re.Pattern[str] | None:
    """A line opening with one of the prompt's speaker names and a colon ("Lin Xiao: ..."), or
    None without names: the 1.5B model shown ``[Lin Xiao] text`` lines answered so on all 13 of
    the sample's, and a subtitle is only the spoken words."""
    names = {name for key in ("speaker_names", "speaker_names_pivot") for name in who.get(key, {}).values()}
    if not names:
        return None
    alternatives = "|".join(re.escape(n) for n in sorted(names, key=len, reverse=True))
    return re.compile(rf"^\s*[\[(]?(?:{alternatives})[\])]?\s*[:：]\s*")


def strip_speaker_prefix(text: str, prefix: re.Pattern[str] | None) -> str:
    """``"Lin Xiao: Yes, I signed it."`` -> ``"Yes, I signed it."`` (a vocative "Lin Xiao, ..." stays)."""
    return (prefix.sub("", text, count=1) or text) if prefix is not None else text


def _placeholder_problems(cue: Cue, restored: Restored) -> list[dict]:
    out = [{"cue": cue.index, "term": e.key, "problem": "placeholder_duplicated", "expected": e.target}
           for e in restored.duplicated]
    out += [{"cue": cue.index, "term": "", "problem": "placeholder_invented", "found": s} for s in restored.stray]
    return out


def translate_episode(transcript: Transcript, market_language: str, backend: TranslationBackend, *,
                      audio_16k=None, bible: SeriesBible | None = None, tm: TranslationMemory | None = None,
                      adaptation: Adapter | AdaptationConfig | None = None,
                      context: dict | None = None, episode: str = "",
                      speakers: Mapping[str, str] | None = None, speaker_genders: bool = False) -> Translation:
    """Translate one episode for one market language with the series bible, TM and market rules.

    Order: TM lookup -> term protection (text backends) -> backend -> restore -> post-edit
    names (speech/LLM backends; and lines whose placeholders were lost, re-translated without
    them) -> TM store -> cleaning (build_translation) -> adaptation -> glossary check. The TM
    holds text before adaptation, so two markets in one language with different currency
    rules share it. Lines a reviewer approved in another episode (``episode`` is this one's
    name) come from the TM first and are final: no backend, name post-edit or adaptation.
    ``speakers`` (label -> bible character) lets an LLM prompt name who speaks each line
    (``speaker_context``); its TM entries then carry the line's character, so a corrected
    link translates the line again.
    """
    language = market_language
    cues = transcript.cues
    lines = [c.text for c in cues]
    table = term_table(bible, language, lines)
    ctx = dict(context or {})
    if bible is not None:
        ctx.setdefault("bible", bible.summary(language))
        ctx.setdefault("bible_pivot", bible.summary("en"))  # for backends that go through English
    ctx.setdefault("scene", lines)
    who = speaker_context(speakers or {}, bible, language, genders=speaker_genders) if uses_speakers(backend) else {}
    ctx.update(who)
    named = {label: (speakers or {})[label] for label in who.get("speaker_names", {})}
    spoken_by = speaker_prefix(who)
    if who:
        log.info("translate %s: the prompt names the speakers %s", language,
                 ", ".join(f"{label}={name}" for label, name in who["speaker_names"].items()))

    keys = keys_for_lines(lines, transcript.language, language, backend.name, bible.version if bible else "")
    keys = [replace(k, backend=f"{k.backend} speaker={named[c.speaker]}") if c.speaker in named else k
            for k, c in zip(keys, cues, strict=True)]
    approved = tm.lookup_approved(keys, exclude_episode=episode) if tm is not None else {}
    known = tm.lookup_many([k for k in keys if k not in approved]) if tm is not None else {}
    texts: list[str | None] = [approved[k][0] if k in approved else known.get(k) for k in keys]
    final = {i for i, k in enumerate(keys) if k in approved}
    todo = [i for i, t in enumerate(texts) if t is None]
    edits: list[dict] = []
    problems: list[dict] = []
    unsure: set[int] = set()

    if todo:
        if backend.term_mode == "post_edit":  # speech: the backend needs every cue for alignment
            every = _run_backend(backend, _request(transcript, language, cues, audio_16k, ctx))
            raw = {i: every[i] for i in todo}
        elif backend.term_mode == "placeholder" and table:
            protected = {i: protect(cues[i].text, table) for i in todo}
            sent = [cues[i].model_copy(update={"text": protected[i].text}) for i in todo]
            out = _run_backend(backend, _request(transcript, language, sent, audio_16k, ctx))
            raw, lost = {}, []
            for i, text in zip(todo, out, strict=True):
                restored = restore(text, protected[i])
                problems += _placeholder_problems(cues[i], restored)
                unsure |= {i} if (restored.duplicated or restored.stray) else set()
                if restored.lost:
                    lost.append(i)
                    log.warning("translate %s: cue %d lost placeholder(s) for %s; translating it without them",
                                language, cues[i].index, ", ".join(e.key for e in restored.lost))
                raw[i] = restored.text
            if lost:  # second chance: plain text, then the post-editor and the checks
                again = _run_backend(backend, _request(transcript, language, [cues[i] for i in lost], audio_16k, ctx))
                raw.update(zip(lost, again, strict=True))
        else:
            out = _run_backend(backend, _request(transcript, language, [cues[i] for i in todo], audio_16k, ctx))
            raw = dict(zip(todo, out, strict=True))
        for i in todo:
            texts[i] = strip_speaker_prefix(clean_text(raw[i]), spoken_by)
    # memory hits too: a bible or post-editor improved since a line was stored applies to it
    # (the post-edit is idempotent, so a line already right is left alone)
    for i, text in enumerate(texts):
        if table and text and i not in final:
            text, changes = post_edit_names(text, cues[i].text, table)
            text, more = insert_vocative(text, cues[i].text, table, language)
            edits += [{"cue": cues[i].index, **c} for c in changes + more]
            texts[i] = text
    if tm is not None and todo:
        tm.store_many({keys[i]: texts[i] for i in todo if texts[i] and i not in unsure})

    translation = build_translation(transcript, [t or "" for t in texts], language, backend.name)
    adapter = (Adapter.for_market(language, adaptation) if isinstance(adaptation, AdaptationConfig) else adaptation)
    adapted: list[dict] = []
    violations = list(problems)
    forbidden = bible.forbidden_for(language) if bible is not None else []
    for n, cue in enumerate(translation.cues):
        if adapter is not None and cue.text and n not in final:
            text, changes = adapter.adapt_line(cue.index, cue.source_text, cue.text)
            adapted += changes
            translation.cues[n] = cue = cue.model_copy(update={"text": text})
        if table or forbidden:
            violations += glossary_violations(cue.index, cue.source_text, cue.text, table, forbidden)
        if backend.term_mode == "context" and bible is not None and cue.text:
            adapted += address_adaptations(cue.index, cue.source_text, cue.text, bible, language)
    translation = translation.model_copy(update={
        "term_edits": edits, "glossary_violations": violations, "adaptations": adapted,
        "tm_hits": len(cues) - len(todo) if tm is not None else 0, "tm_misses": len(todo) if tm is not None else 0,
        "bible_version": bible.version if bible is not None else "",
        "tm_approved": [{"cue": cues[i].index, "origin": approved[keys[i]][1].origin,
                         "approved_at": approved[keys[i]][1].when, "episode": approved[keys[i]][1].episode}
                        for i in sorted(final)]})
    for note in translation.notes:
        log.warning("translate %s: %s", language, note)
    for v in violations:
        log.warning("translate %s: glossary violation %s", language, v)
    return translation


def address_adaptations(index: int, source: str, text: str, bible: SeriesBible, language: str) -> list[dict]:
    """Forms of address a language model rendered by the bible's policy (王爷, 夫人, 姐...), for QC.

    The model decides the rendering from who speaks to whom, so nothing can be replaced here;
    each use is recorded (``adaptation_flags``) with the policy it followed, for a reviewer.
    """
    from locpipe.localize.bible import for_language

    out = []
    for key, honorific in bible.honorifics.items():
        policy = for_language(honorific.policy, language)
        if policy and "<surname>" not in key and key in source:
            out.append({"cue": index, "rule": "form_of_address", "before": key, "after": key,
                        "detail": f"{key} by policy {policy} -> {text!r}"})
    return out


def translation_checks(translation: Translation) -> list[QCCheck]:
    """QC lines for the bible, the adaptation rules and the TM (add to the market's QC report)."""
    per_line = violations_per_line(translation.glossary_violations)
    flagged = [a for a in translation.adaptations if a["before"] == a["after"]]
    looked_up = translation.tm_hits + translation.tm_misses
    return [
        QCCheck(name="glossary_violations", passed=not translation.glossary_violations,
                value=len(translation.glossary_violations), target="0",
                detail="; ".join(f"cue {v['cue']}: {v['term'] or v.get('found', '')} {v['problem']}"
                                 for v in translation.glossary_violations[:5])
                + (f" ({len(per_line)} line(s))" if per_line else "")),
        QCCheck(name="adaptations_applied", passed=True, value=len(translation.adaptations) - len(flagged),
                detail="; ".join(f"cue {a['cue']} {a['rule']}: {a['before']!r} -> {a['after']!r}"
                                 for a in translation.adaptations if a["before"] != a["after"])[:500]),
        QCCheck(name="adaptation_flags", passed=True, value=len(flagged),
                detail="; ".join(f"cue {a['cue']} {a['rule']}: {a.get('detail', a['before'])}" for a in flagged)[:500]),
        QCCheck(name="term_edits", passed=True, value=len(translation.term_edits),
                detail="; ".join(f"cue {e['cue']} {e['rule']}: {e['before']!r} -> {e['after']!r}"
                                 for e in translation.term_edits[:5])),
        QCCheck(name="tm_hit_rate", passed=True,
                value=round(translation.tm_hits / looked_up, 3) if looked_up else None,
                detail=f"{translation.tm_hits} hit(s), {translation.tm_misses} miss(es)"),
        QCCheck(name="tm_approved", passed=True, value=len(translation.tm_approved),
                detail="; ".join(f"cue {a['cue']} from {a['origin']}" for a in translation.tm_approved[:10])),
    ] + review_checks(translation)


def review_checks(translation: Translation) -> list[QCCheck]:
    """QC lines for a linguist's review file: which lines came from it, which edits were refused.

    A refused edit fails the check (a person must look: their correction is not in the export);
    a line kept over the reading speed is only listed.
    """
    if not translation.review_file:
        return []
    f = translation.review_file
    source = f"{f.get('file', '')} (modified {f.get('mtime_iso', '')})"
    lines = ", ".join(f"{r['cue']} ({'+'.join(r['what'])})" for r in translation.reviewed)
    return [
        QCCheck(name="reviewed_lines", passed=True, value=len(translation.reviewed),
                detail=f"from {source}: cue(s) {lines}" if lines else f"{source}: no line changed"),
        QCCheck(name="review_problems", passed=not translation.review_problems,
                value=len(translation.review_problems), target="0",
                detail="; ".join(translation.review_problems + translation.review_warnings)[:1000]),
    ]
