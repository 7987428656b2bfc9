"""A/B forensic marking: one market's episode for many distributors with two encodes.

Why
---
Re-encoding an episode per distributor costs one full encode each. Instead the render
encodes the episode twice, variant A and variant B, in closed GOPs of ``gop`` frames, and
assembles each distributor's copy by stream copy: GOP-segment s comes from A or from B
according to that distributor's keyed symbol sequence (``ab_symbols``). The mark has two
layers:

* **Common layer**: the single-layer pattern of forensic.py (1 Hz breathing, 52-bit
  payload), identical in A and B. Its payload is a *batch* payload the ledger issues for
  (market, episode) (``Ledger.issue_batch``); ``detect.trace_samples`` finds it and the
  crop window exactly as for a single export. Amplitude AB_COMMON_AMPLITUDE.
* **A/B layer**: a second keyed +-1 node pattern on the same 16x28 grid (independent of
  the common carrier), upscaled the same way, multiplied in GOP-segment s by the symbol
  c_s (+1 in A, -1 in B) and by one full sine period over the segment,
  sin(2 pi (k mod gop) / gop) for frame k. The sine is zero-mean over each segment, so
  static content cancels segment by segment, and it is zero at the segment boundaries,
  so splicing A and B GOPs leaves no step in the pattern. Amplitude AB_AMPLITUDE.

AB_COMMON_AMPLITUDE**2 + AB_AMPLITUDE**2 <= forensic.AMPLITUDE**2, so the two layers
together add the same pixel energy as the single-layer mark (PSNR >= 38 dB).

Detection (``trace_ab``)
------------------------
With the crop window the common detector found, every sampled luma frame (band-passed
like detect.lock_in) is projected on the upscaled A/B carrier: one number per sample.
Consecutive differences whiten the host (as in lock_in); the expected difference is a
linear function of the unknown symbols, so a matched filter gives one soft value d_s per
segment for a trial fractional offset phi of the copy within a segment (AB_PHASE_STEPS
per segment). Each candidate sequence c (every member of the batch, and
AB_NULL_SEQUENCES keyed sequences that are never issued) is scored at every whole-segment
shift m over the episode by S = sum_s d_s c_{s+m}.

Why this statistic and its threshold: for a sequence the copy was *not* assembled from (a
wrong member, a null sequence, any member on an unmarked or variant-A-only copy) the c_s
are fair +-1 coins independent of d, so S is a Rademacher sum with weights d whatever the
picture is, and Chernoff's bound P(S >= x) <= min_lambda exp(-lambda x) prod cosh(lambda
d_s) holds with no noise model. The score is -log10 of that bound ("decades of
evidence"). The bound is tight at both ends: about Hoeffding's exp(-z^2/2) for weak
evidence, and exactly 2^-n when all n segments agree, so a copy carries at most
log10(2) = 0.3 decades per segment (1 bit per GOP). (A normalized correlation with a
Hoeffding threshold caps at sqrt(n) and never clears a useful level on a short copy.)
The winner is claimed when its score clears log10(members x offsets / AB_FALSE_CLAIM)
(Bonferroni over every (member, offset) trial) and AB_NULL_MARGIN times the best null
score on the same video (the empirical check that the model holds).

Consequence: the shortest excerpt that can name a distributor is about
log2(members x offsets / AB_FALSE_CLAIM) segments: ~30 segments (15 s at GOP 0.5 s) for
5 members in a 20 s episode, ~36 (18 s) for 8 members in a 2 min episode. A shorter one
reports the batch with ``distributor undetermined``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from locpipe.watermark.detect import DETECT_H, DETECT_W, LumaSamples, axis_basis, band_pass
from locpipe.watermark.forensic import AMPLITUDE, GRID_H, GRID_W, PERIOD, _rng, node_pattern, write_y4m
from locpipe.watermark.payload import Payload

log = logging.getLogger(__name__)

#: bump when the A/B layer or the symbol derivation changes (part of the render stage key)
AB_VERSION = 1
#: peak node amplitudes (8-bit levels) of the two layers in A/B mode; together they carry
#: the single-layer mark's energy (4.3^2 + 2.5^2 <= 5^2). Measured in benchmarks/watermark.py.
AB_COMMON_AMPLITUDE = 4.3
AB_AMPLITUDE = 2.5
#: never-issued keyed sequences scored on every trace (the empirical null)
AB_NULL_SEQUENCES = 64
#: trial fractional offsets per segment (phase error at most half a step: cos(15 deg) = 0.97)
AB_PHASE_STEPS = 12
#: bound on the chance that a copy is attributed to a member it does not come from
AB_FALSE_CLAIM = 1e-6
#: the winner must also beat the null sequences' best score (on the same video) by this factor
AB_NULL_MARGIN = 1.5
#: shifts beyond the episode's ends tried (a copy a little longer than the issued timing)
AB_SLACK_SEGMENTS = 2


# --------------------------------------------------------------------------- keyed layout


def ab_nodes(key: bytes) -> np.ndarray:
    """(GRID_H, GRID_W) +-1 node signs of the A/B carrier: keyed, independent of the
    common carrier (another label of the same keyed generator)."""
    return _rng(key, "ab-carrier").choice([-1.0, 1.0], size=(GRID_H, GRID_W))


def _keyed_signs(key: bytes, label: str, n: int) -> np.ndarray:
    """n +-1 values from HMAC-SHA256 in counter mode: a prefix of the same sequence for
    any longer n, so the detector can generate the whole episode's symbols."""
    out = np.empty(0, dtype=np.uint8)
    counter = 0
    while out.size < n:
        block = hmac.new(key, f"locpipe-ab-v{AB_VERSION}:{label}:{counter}".encode(), hashlib.sha256).digest()
        out = np.concatenate([out, np.unpackbits(np.frombuffer(block, dtype=np.uint8))])
        counter += 1
    return (1 - 2 * out[:n].astype(np.int8)).astype(np.int8)


def ab_symbols(key: bytes, batch: Payload, index: int, n_segments: int) -> np.ndarray:
    """Member ``index`` of ``batch``: +1 = take GOP-segment s from variant A, -1 = from B."""
    if index < 0:
        raise ValueError("member indices are >= 0")
    return _keyed_signs(key, f"member:{batch.hex}:{index}", n_segments)


def null_symbols(key: bytes, batch: Payload, index: int, n_segments: int) -> np.ndarray:
    """Keyed sequences no member ever gets (another label): the trace's empirical null."""
    return _keyed_signs(key, f"null:{batch.hex}:{index}", n_segments)


def n_segments_for(n_frames: int, gop: int) -> int:
    return -(-n_frames // gop)


# --------------------------------------------------------------------------- embedding


def episode_pattern(key: bytes, common: Payload, *, fps: float | Fraction, n_frames: int, gop: int,
                    symbols: np.ndarray | None, start_frame: int = 0) -> np.ndarray:
    """uint8 (n_frames, GRID_H, GRID_W) node luma around 128 for episode frames
    start_frame .. start_frame + n_frames - 1 (frame k at t = k / fps).

    The common layer breathes at 1/PERIOD Hz (AB_COMMON_AMPLITUDE with an A/B layer,
    forensic.AMPLITUDE alone); the A/B layer is symbols[k // gop] * sin(2 pi (k mod gop) /
    gop) on the A/B carrier (``symbols`` indexed by *episode* segment; None = no A/B
    layer; np.full(n, 1) is variant A, np.full(n, -1) variant B). Rounded to 8 bits at
    node level like forensic.pattern_frames.
    """
    if gop < 2:
        raise ValueError("gop must be at least 2 frames")
    k = np.arange(start_frame, start_frame + n_frames)
    t = k / float(fps)
    amp = AMPLITUDE if symbols is None else AB_COMMON_AMPLITUDE
    values = amp * np.sin(2 * np.pi * t / PERIOD)[:, None, None] * node_pattern(common, key)[None]
    if symbols is not None:
        symbols = np.asarray(symbols)
        seg = k // gop
        if n_frames and seg[-1] >= len(symbols):
            raise ValueError(f"frame {k[-1]} is in segment {seg[-1]} but only {len(symbols)} symbols were given")
        wave = symbols[seg] * np.sin(2 * np.pi * (k % gop) / gop)
        values = values + AB_AMPLITUDE * wave[:, None, None] * ab_nodes(key)[None]
    return np.clip(np.round(128.0 + values), 0, 255).astype(np.uint8)


def write_pattern_clip(path: Path, luma: np.ndarray, fps: Fraction | float) -> Path:
    """The per-frame pattern as a Y4M clip at the video's exact rate (a float such as
    29.97... is taken as the nearest ratio with a denominator <= 1001, i.e. 30000/1001)."""
    rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_y4m(path, luma, rate)


# --------------------------------------------------------------------------- detection (pure)


@dataclass(frozen=True)
class ABTrace:
    """Which member of an A/B batch a copy belongs to (``index`` None: undetermined)."""

    index: int | None
    score: float  # evidence of the best (member, offset): -log10 of its chance-match bound
    threshold: float
    null_max: float  # best score of AB_NULL_SEQUENCES never-issued sequences over all offsets
    offset: float  # seconds: episode time of the copy's first sampled frame (best member)
    n_segments_seen: int
    best_index: int | None = None  # best-scoring member even if it did not clear the threshold
    runner_up: float = 0.0  # best score of any other member
    n_candidates: int = 0
    n_offsets: int = 0
    p_value: float = 1.0  # bound on a chance match of so large a score over all (member, offset) trials
    correlation: float = 0.0  # normalized correlation of the best member's sequence with the d_s (<= 1)
    scores: dict[int, float] = field(default_factory=dict)  # best score per member

    @property
    def determined(self) -> bool:
        return self.index is not None

    def as_dict(self) -> dict:
        return {"distributor_determined": self.determined, "index": self.index,
                "best_index": self.best_index, "score": round(self.score, 2), "threshold": round(self.threshold, 2),
                "null_max": round(self.null_max, 2), "runner_up": round(self.runner_up, 2),
                "correlation": round(self.correlation, 3), "p_value": float(f"{self.p_value:.3g}"),
                "offset_seconds": round(self.offset, 3),
                "segments_seen": self.n_segments_seen, "candidates": self.n_candidates,
                "offsets_searched": self.n_offsets, "false_claim_rate": AB_FALSE_CLAIM}


def ab_template(key: bytes, crop: tuple[float, float, float, float]) -> np.ndarray:
    """The A/B carrier as the detector sees it through the crop window (left, right, top,
    bottom cut, as TraceResult.crop): (DETECT_H, DETECT_W)."""
    left, right, top, bottom = crop
    by = axis_basis(DETECT_H, GRID_H, top, 1 - bottom)
    bx = axis_basis(DETECT_W, GRID_W, left, 1 - right)
    return by @ ab_nodes(key) @ bx.T


def projected_diffs(samples: LumaSamples, template: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sample times, weighted differences of the projections, weights): the band-passed
    frames projected on the carrier, differenced in time; samples weighted by the inverse
    of their residual energy like detect.lock_in (a scene cut is loud)."""
    y = band_pass(samples.frames.astype(np.float64))
    r = np.diff(y, axis=0)
    r -= r.mean(axis=(1, 2), keepdims=True)
    energy = np.mean(r * r, axis=(1, 2))
    w = 1.0 / (energy + np.median(energy) + 1e-9)
    x = np.tensordot(r, template, axes=((1, 2), (0, 1)))
    return np.asarray(samples.times, dtype=np.float64), w * x, w


def segment_values(times: np.ndarray, wdiff: np.ndarray, seg_seconds: float, phi: float) -> np.ndarray:
    """Matched-filter soft value per local segment for the fractional offset ``phi``.

    Sample i is at episode time times[i] + phi (+ a whole number of segments); its pattern
    is c_{s(i)} h_i with h_i = sin(2 pi (t_i + phi) / seg). The difference i -> i+1 expects
    c_{s(i+1)} h_{i+1} - c_{s(i)} h_i, so it adds +h_{i+1} to segment s(i+1) and -h_i to
    segment s(i), each times the (weighted) observed difference.
    """
    u = (times + phi) / seg_seconds
    seg = np.floor(u + 1e-9).astype(int)
    h = np.sin(2 * np.pi * u)
    d = np.zeros(int(seg[-1]) + 1)
    np.add.at(d, seg[1:], wdiff * h[1:])
    np.add.at(d, seg[:-1], -wdiff * h[:-1])
    return d


def shift_sums(d: np.ndarray, seqs: np.ndarray, slack: int = AB_SLACK_SEGMENTS
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """S[k, m] = sum_s d_s seqs[k, s + m] for every shift m in -slack .. n_total - n_local +
    slack (the copy's local segment s is episode segment s + m; segments outside the
    episode are left out). Returns (S (K, n_shifts), shifts, lo, hi): local segments
    lo[m] <= s < hi[m] overlap the episode."""
    n_local, n_total = len(d), seqs.shape[1]
    shifts = np.arange(-slack, max(0, n_total - n_local) + slack + 1)
    pad = slack + n_local
    padded = np.zeros((seqs.shape[0], n_total + 2 * pad))
    padded[:, pad:pad + n_total] = seqs
    size = 1 << int(np.ceil(np.log2(padded.shape[1] + n_local)))
    corr = np.fft.irfft(np.fft.rfft(padded, size, axis=1) * np.conj(np.fft.rfft(d, size)), size, axis=1)
    lo = np.clip(-shifts, 0, n_local)
    hi = np.clip(n_total - shifts, 0, n_local)
    return corr[:, shifts + pad], shifts, lo, hi


#: Chernoff parameters tried (times 1 / RMS of d): any lambda gives a valid bound
_LAMBDAS = np.geomspace(0.02, 200.0, 64)


def chernoff_log10_p(sums: np.ndarray, d: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """-log10 of a bound on P(sum_s d_s c_s >= S) over local segments lo..hi-1 when the c_s
    are fair independent +-1 coins (any sequence the copy was not made from):

        P <= min_lambda exp(-lambda S) prod_s cosh(lambda d_s)

    Exact for Rademacher sums, whatever d is (no noise model), and tight at both ends:
    ~Hoeffding's exp(-z^2/2) for weak evidence, 2^-n when all n segment signs agree.
    ``sums`` (K, M) for M shifts; returns (K, M) decades of evidence (>= 0)."""
    scale = np.sqrt(np.mean(d * d)) + 1e-30
    lam = _LAMBDAS / scale
    x = lam[None, :] * d[:, None]  # (n_local, L)
    logcosh = np.logaddexp(x, -x) - math.log(2.0)
    cum = np.vstack([np.zeros(len(lam)), np.cumsum(logcosh, axis=0)])  # (n_local + 1, L)
    window = cum[hi] - cum[lo]  # (M, L)
    log_p = -sums[:, :, None] * lam[None, None, :] + window[None]
    return np.maximum(-np.min(log_p, axis=2) / math.log(10.0), 0.0)


def trace_ab(samples: LumaSamples, key: bytes, batch: Payload, members: dict[int, str] | list[int], *,
             crop: tuple[float, float, float, float], fps: float | Fraction, gop: int, n_frames: int,
             n_null: int = AB_NULL_SEQUENCES, phase_steps: int = AB_PHASE_STEPS) -> ABTrace:
    """Decide which member of ``batch`` the sampled copy was assembled for.

    ``members``: the batch's member indices (a dict index -> name works too); ``crop``: the
    window the common detector found; ``fps``, ``gop``, ``n_frames``: the batch's timing
    as issued (a copy converted to another rate keeps its timestamps, so the segment length
    in seconds is what matters). Every (member, offset) pair is one trial; the winner is
    claimed when its evidence clears both the Bonferroni level for AB_FALSE_CLAIM and the
    null sequences' best (times AB_NULL_MARGIN). Pure: the testable core of the A/B trace.
    """
    indices = sorted(members)
    seg_seconds = gop / float(fps)
    n_total = n_segments_for(n_frames, gop)
    if len(samples.times) < 4 or not indices:
        return ABTrace(None, 0.0, math.inf, 0.0, 0.0, 0, n_candidates=len(indices))
    seqs = np.stack([ab_symbols(key, batch, j, n_total) for j in indices]
                    + [null_symbols(key, batch, i, n_total) for i in range(n_null)]).astype(np.float64)
    times, wdiff, _ = projected_diffs(samples, ab_template(key, crop))
    n_mem = len(indices)
    best = (-math.inf, 0, 0.0, 0.0)  # (decades, member row, offset seconds, correlation)
    per_member = np.zeros(n_mem)
    null_max = 0.0
    n_offsets = n_local = 0
    for step in range(phase_steps):
        phi = step * seg_seconds / phase_steps
        d = segment_values(times, wdiff, seg_seconds, phi)
        sums, shifts, lo, hi = shift_sums(d, seqs)
        ev = chernoff_log10_p(sums, d, lo, hi)
        n_offsets += len(shifts)
        n_local = max(n_local, len(d))
        if n_null:
            null_max = max(null_max, float(ev[n_mem:].max()))
        em = ev[:n_mem]
        per_member = np.maximum(per_member, em.max(axis=1))
        k, m = np.unravel_index(int(np.argmax(em)), em.shape)
        if em[k, m] > best[0]:
            energy = np.sqrt(np.sum(d[lo[m]:hi[m]] ** 2) * max(hi[m] - lo[m], 1)) + 1e-30
            best = (float(em[k, m]), int(k), float(shifts[m] * seg_seconds + phi), float(sums[k, m] / energy))
    score, row, offset, corr = best
    trials = n_mem * n_offsets
    threshold = max(math.log10(trials / AB_FALSE_CLAIM), AB_NULL_MARGIN * null_max)
    others = np.delete(per_member, row)
    runner_up = float(others.max()) if len(others) else 0.0
    winner = indices[row] if score >= threshold else None
    log.info("A/B trace: best member %d, %.1f decades (threshold %.1f, null max %.1f, runner-up %.1f) at %.2f s",
             indices[row], score, threshold, null_max, runner_up, offset)
    return ABTrace(index=winner, score=score, threshold=threshold, null_max=null_max, offset=offset,
                   n_segments_seen=n_local, best_index=indices[row], runner_up=runner_up, n_candidates=n_mem,
                   n_offsets=n_offsets, p_value=min(1.0, trials * 10.0 ** -score), correlation=corr,
                   scores={j: round(float(v), 2) for j, v in zip(indices, per_member)})
