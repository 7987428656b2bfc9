"""Quality metrics shared by tests, QC and benchmarks."""

from __future__ import annotations

import re
import unicodedata


def _chars(text: str) -> list[str]:
    """Characters that count for CER: letters and digits only (punctuation and spaces dropped)."""
    text = unicodedata.normalize("NFKC", text)
    return [ch for ch in text if unicodedata.category(ch)[0] in ("L", "N")]


def edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def cer(reference: str, hypothesis: str) -> float:
    """Character error rate of ``hypothesis`` against ``reference`` (0 = identical)."""
    ref, hyp = _chars(reference), _chars(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)


def words(text: str) -> list[str]:
    return re.findall(r"[\w']+", text.lower())
