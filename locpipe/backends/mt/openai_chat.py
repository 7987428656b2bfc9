"""An OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, paid APIs) as translator.

Why a scene at a time: a language model translates a line far better when it sees who
speaks, the lines around it, the series bible and the market's notes. The price is that its
answer is free text: it may not be JSON, may merge two lines, skip one or renumber them. So
every answer is parsed and validated (pydantic) against the exact ids asked for; a bad
answer gets a repair prompt naming the problem (up to ``LOCPIPE_LLM_REPAIRS`` times), then
the scene falls back to one request per line. Lines are never shifted or dropped: either
every id comes back exactly once or the stage fails naming the line.

Environment: ``LOCPIPE_LLM_URL`` (base URL ending in /v1, e.g. http://127.0.0.1:8080/v1),
``LOCPIPE_LLM_MODEL``, ``LOCPIPE_LLM_API_KEY`` (optional), ``LOCPIPE_LLM_TIMEOUT`` (seconds
per request, default 120), ``LOCPIPE_LLM_REPAIRS`` (default 2), ``LOCPIPE_LLM_JSON_MODE``
(send response_format json_object; default 1).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, StrictStr, ValidationError

from locpipe.artifacts import Cue
from locpipe.backends.mt.base import (
    TranslationBackend,
    TranslationFailed,
    TranslationRequest,
    check_reachable,
    is_local_url,
    register,
)
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

PROMPT_VERSION = "scene-json-v1"
#: a gap longer than this (seconds) between cues starts a new scene
SCENE_GAP = 6.0
MAX_SCENE_LINES = 30
#: source lines shown before and after a scene as context (not translated)
NEIGHBOURS = 2
LANGUAGE_NAMES = {"en": "English", "pt": "Portuguese", "pt-BR": "Brazilian Portuguese", "es": "Spanish",
                  "es-419": "Latin American Spanish", "id": "Indonesian", "th": "Thai", "ar": "Arabic",
                  "ja": "Japanese", "ko": "Korean", "fr": "French", "de": "German", "vi": "Vietnamese",
                  "zh": "Chinese"}

SYSTEM_PROMPT = """You are a professional subtitle translator for short vertical drama series.
Translate each numbered line from {source} into natural, spoken {target}.
Rules:
- Answer with JSON only, exactly: {{"lines": [{{"id": <number>, "text": "<translation>"}}, ...]}}
- One entry for every id you are given, same ids, no extra entries; never merge or split lines.
- Lines under "context_before" and "context_after" are for understanding only: do not translate them.
- Render names, honorifics and terms exactly as the series bible says; never use a forbidden rendering.
- Keep placeholders such as __T1__ unchanged.
- Plain text only: no markup, no line breaks, no notes or explanations."""


class _Line(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int
    text: StrictStr


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore")
    lines: list[_Line]


class BadReply(ValueError):
    """The model's answer is unusable; the message is sent back to it in the repair prompt."""


def extract_json(content: str) -> object:
    """The JSON object in an answer, tolerating a ```json fence or chatter around it."""
    text = content.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.S)
    if fence:
        text = fence.group(1).strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        start, end = text.find("{"), text.rfind("}")
        if 0 <= start < end:
            try:
                return json.loads(text[start:end + 1])
            except json.JSONDecodeError:
                pass
    raise BadReply("the answer was not valid JSON")


def _compact_to_lines(data: object) -> object:
    """``{"1": "text", "2": "text"}`` (the compact shape local models are asked for: a third of
    the tokens) as the ``{"lines": [...]}`` shape; anything else unchanged."""
    if isinstance(data, dict) and "lines" not in data and data and all(str(k).isdigit() for k in data):
        return {"lines": [{"id": int(k), "text": v} for k, v in data.items()]}
    return data


def parse_reply(content: str, ids: list[int]) -> dict[int, str]:
    """Validated {id: text}: exactly the ids asked for, each once (either reply shape)."""
    data = _compact_to_lines(extract_json(content))
    try:
        reply = _Reply.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise BadReply(f"wrong shape at {'.'.join(map(str, err['loc'])) or 'top level'}: {err['msg']}") from None
    got = [ln.id for ln in reply.lines]
    dupes = sorted({i for i in got if got.count(i) > 1})
    missing = sorted(set(ids) - set(got))
    extra = sorted(set(got) - set(ids))
    if dupes or missing or extra:
        parts = [f"missing ids {missing}" if missing else "", f"unexpected ids {extra}" if extra else "",
                 f"repeated ids {dupes}" if dupes else ""]
        raise BadReply("; ".join(p for p in parts if p) + f"; expected exactly ids {ids}")
    return {ln.id: ln.text for ln in reply.lines}


def split_scenes(cues: list[Cue]) -> list[list[int]]:
    """Positions of cues grouped into scenes by pauses, capped in length."""
    scenes: list[list[int]] = []
    for i, cue in enumerate(cues):
        if not scenes or len(scenes[-1]) >= MAX_SCENE_LINES or cue.start - cues[i - 1].end > SCENE_GAP:
            scenes.append([])
        scenes[-1].append(i)
    return scenes


def max_characters_hint(max_chars: int) -> int:
    """Models overshoot character limits: ask for a little less than the budget."""
    return max(1, int(max_chars * 0.9))


@dataclass(frozen=True)
class ChatSettings:
    url: str
    model: str
    api_key: str = ""
    timeout: float = 120.0
    repairs: int = 2
    json_mode: bool = True

    @classmethod
    def from_env(cls) -> ChatSettings:
        return cls(url=os.environ.get("LOCPIPE_LLM_URL", "").rstrip("/"),
                   model=os.environ.get("LOCPIPE_LLM_MODEL", "default"),
                   api_key=os.environ.get("LOCPIPE_LLM_API_KEY", ""),
                   timeout=float(os.environ.get("LOCPIPE_LLM_TIMEOUT", "120")),
                   repairs=int(os.environ.get("LOCPIPE_LLM_REPAIRS", "2")),
                   json_mode=os.environ.get("LOCPIPE_LLM_JSON_MODE", "1") not in ("0", "false", "no"))


def chat(settings: ChatSettings, messages: list[dict], attempts: int = 3) -> str:
    """One chat completion; the answer's text. Transient HTTP errors are retried briefly."""
    body: dict = {"model": settings.model, "messages": messages, "temperature": 0}
    if settings.json_mode:
        body["response_format"] = {"type": "json_object"}
    headers = {"Content-Type": "application/json"}
    if settings.api_key:
        headers["Authorization"] = f"Bearer {settings.api_key}"
    req = urllib.request.Request(settings.url + "/chat/completions", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(req, timeout=settings.timeout) as resp:
                payload = json.loads(resp.read().decode("utf-8"))
            return str(payload["choices"][0]["message"]["content"] or "")
        except urllib.error.HTTPError as exc:
            if exc.code in (429, 500, 502, 503, 504) and attempt + 1 < attempts:
                time.sleep(0.5 * 2 ** attempt)
                continue
            detail = exc.read()[:200].decode("utf-8", "replace")
            raise BackendUnavailable(f"llm: {settings.url} answered HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise BackendUnavailable(f"llm: cannot use {settings.url} ({reason}); is the server running?") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise BackendUnavailable(f"llm: {settings.url} did not answer like an OpenAI chat endpoint") from None
    raise BackendUnavailable(f"llm: {settings.url} kept failing")  # pragma: no cover


def speaker_names(request: TranslationRequest) -> dict[str, str]:
    """Label -> the character's name to show for who speaks ("S1" is "Lin Xiao"): the context's
    ``speaker_names``, or for the English step of a pivot ``speaker_names_pivot`` (the English
    renderings). Labels not in it are shown as they are."""
    ctx = request.context or {}
    if request.target_base == "en" and ctx.get("speaker_names_pivot"):
        return ctx["speaker_names_pivot"]
    return ctx.get("speaker_names") or {}


def speakers_line(request: TranslationRequest, cues: list[Cue]) -> str:
    """``Speakers: S1 = Lin Xiao (female), S2 = Mr. Lu`` for the named speakers of ``cues``, or "".

    The lines keep their labels (``[S1] text``): measured with the 1.5B local model, names in
    place of the labels made it answer like a script ("Xue'er: [f] ...", "Su Wan, I'm sorry")."""
    names = speaker_names(request)
    genders = (request.context or {}).get("speaker_genders") or {}
    shown = sorted({c.speaker for c in cues if c.speaker in names}, key=lambda s: (len(s), s))
    return ("Speakers: " + ", ".join(f"{s} = {names[s]}" + (f" ({genders[s]})" if s in genders else "")
                                     for s in shown)) if shown else ""


def scene_message(request: TranslationRequest, positions: list[int]) -> dict:
    """The user message for one scene: numbered lines (ids from 1), neighbours, bible, notes."""
    ctx = request.context or {}
    scene_lines: list[str] = list(ctx.get("scene") or [])
    cues = request.cues
    message: dict = {"target_language": LANGUAGE_NAMES.get(request.target_lang, request.target_lang)}
    if ctx.get("bible"):
        message["series_bible"] = ctx["bible"]
    if ctx.get("notes"):
        message["market_notes"] = ctx["notes"]
    first, last = cues[positions[0]], cues[positions[-1]]
    before = [c.text for c in cues[max(0, positions[0] - NEIGHBOURS):positions[0]]]
    after = [c.text for c in cues[positions[-1] + 1:positions[-1] + 1 + NEIGHBOURS]]
    if scene_lines and not before and 0 < first.index <= len(scene_lines):
        before = scene_lines[max(0, first.index - NEIGHBOURS):first.index]
    if scene_lines and not after and last.index + 1 < len(scene_lines):
        after = scene_lines[last.index + 1:last.index + 1 + NEIGHBOURS]
    if before:
        message["context_before"] = before
    names = speaker_names(request)
    message["lines"] = [{"id": n, "text": cues[p].text,
                         **({"speaker": names.get(cues[p].speaker, cues[p].speaker)} if cues[p].speaker else {})}
                        for n, p in enumerate(positions, 1)]
    if after:
        message["context_after"] = after
    return {"role": "user", "content": json.dumps(message, ensure_ascii=False)}


@register("llm")
class OpenAIChatBackend(TranslationBackend):
    term_mode = "context"  # the bible goes in the prompt; output is checked and corrected after
    #: the JSON shape asked for again in a repair prompt (subclasses asking another shape change it)
    reply_hint = '{"lines": [{"id": n, "text": "..."}]}'

    def __init__(self, settings: ChatSettings | None = None):
        self.settings = settings or ChatSettings.from_env()

    @property
    def remote(self) -> bool:  # type: ignore[override]
        """An endpoint on this machine (a llama.cpp server, vLLM on localhost) keeps the text here."""
        return not is_local_url(self.settings.url)

    @property
    def version(self) -> str:
        return f"openai-chat model={self.settings.model} prompt={PROMPT_VERSION}"

    def supports(self, source: str, target: str) -> bool:
        return True  # any pair the model knows; quality is the operator's choice of model

    def check_available(self) -> None:
        if not self.settings.url:
            raise BackendUnavailable("LOCPIPE_LLM_URL is not set (an OpenAI-compatible endpoint, "
                                     "e.g. http://127.0.0.1:8080/v1; model in LOCPIPE_LLM_MODEL)")
        check_reachable(self.settings.url)

    def translate(self, request: TranslationRequest) -> list[str]:
        out: list[str | None] = [None] * len(request.cues)
        todo = [i for i, c in enumerate(request.cues) if c.text.strip()]
        for i, c in enumerate(request.cues):
            if not c.text.strip():
                out[i] = ""
        scenes = [[todo[k] for k in scene] for scene in split_scenes([request.cues[i] for i in todo])]
        results = self._map(lambda s: self._scene_or_lines(request, s), scenes)
        for positions, texts in zip(scenes, results, strict=True):
            for p, t in zip(positions, texts, strict=True):
                out[p] = t
        return [t if t is not None else "" for t in out]

    #: scenes (and line-by-line retries) asked at the same time: 1 for a remote API by default; a
    #: runtime that batches requests (the local model, a vLLM server) answers several as fast as one
    scene_workers = 1

    def _map(self, fn: Callable[[Any], Any], items: list) -> list:
        """``[fn(x) for x in items]``, up to ``scene_workers`` at a time (results in order)."""
        if self.scene_workers <= 1 or len(items) <= 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(min(self.scene_workers, len(items)), thread_name_prefix="llm-scene") as pool:
            return list(pool.map(fn, items))

    def _scene_or_lines(self, request: TranslationRequest, positions: list[int]) -> list[str]:
        texts = self._scene(request, positions)
        if texts is None:
            log.warning("llm: scene of %d line(s) failed validation; translating line by line", len(positions))
            texts = self._map(lambda p: self._single(request, p), positions)
        return texts

    can_shorten = True

    def shorten(self, source: str, text: str, target_lang: str, max_chars: int) -> str | None:
        """Ask for a dub line of at most ``max_chars`` that keeps the meaning (validated JSON)."""
        language = LANGUAGE_NAMES.get(target_lang, target_lang)
        system = (f"You shorten {language} dubbing lines of a short drama so they fit the actor's mouth "
                  'time. Keep names, meaning and tone. Answer only {"lines": [{"id": 1, "text": "..."}]}.')
        user = {"role": "user", "content": json.dumps({
            "source": source, "current": text, "max_characters": max_chars,
            "task": f"Rewrite 'current' in {language} in at most {max_characters_hint(max_chars)} characters."},
            ensure_ascii=False)}
        got = self._ask(system, user, [1], self.settings.repairs)
        if not got or len(got[0]) > max_chars * 1.1:
            return None
        return got[0]

    def ask(self, system: str, user_text: str, ids: list[int]) -> list[str] | None:
        """One validated answer per id for any task in this JSON shape (``locpipe bible suggest``),
        or None when it never validated."""
        return self._ask(system, {"role": "user", "content": user_text}, ids, self.settings.repairs)

    def _ask(self, system: str, user: dict, ids: list[int], repairs: int) -> list[str] | None:
        messages = [{"role": "system", "content": system}, user]
        for attempt in range(repairs + 1):
            content = self._complete(messages, ids)
            try:
                got = parse_reply(content, ids)
                return [got[i] for i in ids]
            except BadReply as exc:
                log.info("llm: bad answer (attempt %d/%d): %s", attempt + 1, repairs + 1, exc)
                messages = messages + [
                    {"role": "assistant", "content": content[:4000]},
                    {"role": "user", "content": f"Your answer was invalid: {exc}. Answer again with only the JSON "
                                                f"object {self.reply_hint} and exactly ids {ids}."}]
        return None

    def _complete(self, messages: list[dict], ids: list[int]) -> str:
        """The answer's text for one chat request (the only transport-specific step: a local
        runtime overrides it and may constrain the answer to exactly ``ids``)."""
        return chat(self.settings, messages)

    def _scene_message(self, request: TranslationRequest, positions: list[int]) -> dict:
        return scene_message(request, positions)

    def _system(self, request: TranslationRequest) -> str:
        return SYSTEM_PROMPT.format(source=LANGUAGE_NAMES.get(request.source_lang, request.source_lang),
                                    target=LANGUAGE_NAMES.get(request.target_lang, request.target_lang))

    def _scene(self, request: TranslationRequest, positions: list[int]) -> list[str] | None:
        ids = list(range(1, len(positions) + 1))
        return self._ask(self._system(request), self._scene_message(request, positions), ids, self.settings.repairs)

    def _single(self, request: TranslationRequest, position: int) -> str:
        got = self._ask(self._system(request), self._scene_message(request, [position]), [1], self.settings.repairs)
        if got is None:
            cue = request.cues[position]
            raise TranslationFailed(f"{self.name} gave no valid answer for cue {cue.index} ({cue.text!r}) after "
                                    f"{self.settings.repairs + 1} attempts")
        return got[0]
