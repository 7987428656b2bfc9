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


def label_accuracy(predicted: list[str], truth: list[str]) -> float:
    """Share of items labelled right under the best one-to-one renaming of the labels.

    Speaker clustering names its clusters arbitrarily (S1, S2, ...): only the grouping counts.
    """
    from itertools import permutations

    labels, names = sorted(set(predicted)), sorted(set(truth))
    best = 0
    for perm in permutations(names, min(len(labels), len(names))):
        rename = dict(zip(labels, perm))
        best = max(best, sum(rename.get(p) == t for p, t in zip(predicted, truth)))
    return best / len(truth) if truth else 1.0
