"""KV states of prompt prefixes on disk, so a new worker process does not evaluate the rules again.

Why: on this CPU the local model evaluates ~20 prompt tokens a second, and every request of
the local translator starts with the same system prompt: the rules (~170 tokens: ~8 s, the same
for every episode of every series into one language) and then the episode's bible entries
(a few hundred tokens, the same for a series' episodes that use the same characters). Within a
process the decoder already reuses them from its KV cache; across processes (one ``locpipe
run`` per episode, a watch-folder daemon, farm workers) they were evaluated again each time.
llama.cpp saves a sequence's keys and values with its tokens (``llama_state_seq_save_file``,
~28 KB a token for this model, 12 ms for 300 tokens) and loads them bit for bit (measured:
identical logits), as its own ``--prompt-cache`` does for one prompt.

A file is named by the SHA-256 of the model's identity and the prefix tokens, written to a
temporary name and renamed (two workers may write the same file: either copy is whole); it is
checked against its tokens when loaded, and an unreadable one is deleted and evaluated again.
The folder is kept under ``max_bytes`` by dropping the least recently used files.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: prefixes shorter than this are evaluated (a file would save less than a second)
MIN_TOKENS = 64
#: the folder's size cap: ~18k tokens of this model's KV (some 40 episodes' system prompts)
MAX_BYTES = 512 << 20


def prefix_key(identity: str, tokens: list[int]) -> str:
    """The file name of a prefix: the model's identity and the exact tokens, hashed."""
    digest = hashlib.sha256(identity.encode("utf-8"))
    digest.update(b"\0" + ",".join(map(str, tokens)).encode("ascii"))
    return digest.hexdigest()[:40]


def files_to_drop(files: list[tuple[float, int, Path]], max_bytes: int) -> list[Path]:
    """Which of ``(mtime, size, path)`` to delete, oldest first, to bring the total under ``max_bytes``."""
    total = sum(size for _, size, _ in files)
    out = []
    for _mtime, size, path in sorted(files):
        if total <= max_bytes:
            break
        out.append(path)
        total -= size
    return out


@dataclass
class PrefixCache:
    """A folder of saved KV sequences for one model (``identity``: its file, size and runtime)."""

    folder: Path
    identity: str
    max_bytes: int = MAX_BYTES

    def path(self, tokens: list[int]) -> Path:
        return self.folder / f"{prefix_key(self.identity, tokens)}.kv"

    def has(self, tokens: list[int]) -> bool:
        return len(tokens) >= MIN_TOKENS and self.path(tokens).is_file()

    def load(self, ctx: Any, seq: int, tokens: list[int]) -> bool:
        """Fill sequence ``seq`` (empty) with the saved prefix ``tokens``; False when there is none
        or it does not hold exactly those tokens (the sequence is then left empty)."""
        import llama_cpp

        path = self.path(tokens)
        if len(tokens) < MIN_TOKENS or not path.is_file():
            return False
        out = (llama_cpp.llama_token * len(tokens))()
        count = ctypes.c_size_t(0)
        try:
            read = llama_cpp.llama_state_seq_load_file(ctx, str(path).encode(), seq, out, len(tokens),
                                                       ctypes.byref(count))
        except OSError as exc:
            read = 0
            log.warning("local-llm prefix cache: %s: %s", path, exc)
        if read == 0 or count.value != len(tokens) or list(out) != tokens:
            llama_cpp.llama_kv_cache_seq_rm(ctx, seq, 0, -1)
            log.warning("local-llm prefix cache: %s does not hold this prefix (%d of %d tokens read); "
                        "removed, evaluating it again", path.name, count.value, len(tokens))
            path.unlink(missing_ok=True)
            return False
        try:
            os.utime(path)  # recently used: pruned last
        except OSError:
            pass
        return True

    def save(self, ctx: Any, seq: int, tokens: list[int]) -> None:
        """Write sequence ``seq`` (holding exactly ``tokens``) under its key; failures only cost time."""
        import llama_cpp

        if len(tokens) < MIN_TOKENS:
            return
        path, tmp = self.path(tokens), ""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".", suffix=".part")
            os.close(fd)
            arr = (llama_cpp.llama_token * len(tokens))(*tokens)
            if llama_cpp.llama_state_seq_save_file(ctx, tmp.encode(), seq, arr, len(tokens)) == 0:
                raise OSError("llama_state_seq_save_file wrote nothing")
            os.replace(tmp, path)
            self.prune()
        except OSError as exc:
            log.warning("local-llm prefix cache: %s not written (%s)", path, exc)
            if tmp:
                Path(tmp).unlink(missing_ok=True)

    def prune(self) -> None:
        files = []
        for path in self.folder.glob("*.kv"):
            try:
                st = path.stat()
            except OSError:
                continue
            files.append((st.st_mtime, st.st_size, path))
        for path in files_to_drop(files, self.max_bytes):
            path.unlink(missing_ok=True)


def prefix_cache_for(model: Path, runtime: str) -> PrefixCache | None:
    """The cache for ``model``: ``LOCPIPE_LOCAL_LLM_PREFIX_CACHE`` (a folder, or "off"), else
    ``<asset cache>/local-llm-kv``."""
    from locpipe.assets import cache_dir

    value = os.environ.get("LOCPIPE_LOCAL_LLM_PREFIX_CACHE", "")
    if value.lower() in ("off", "0", "no"):
        return None
    try:
        st = model.stat()
    except OSError:
        return None
    identity = f"{model.name}:{st.st_size}:{int(st.st_mtime)}:{runtime}"
    return PrefixCache(Path(value) if value else cache_dir() / "local-llm-kv", identity)
