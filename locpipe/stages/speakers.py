"""Speakers: label every source cue with who speaks it, the same label across a series.

The dub gives each character one voice in every episode, so a label must mean the same
person in episode 1 and episode 40. Per episode, each cue long enough to carry a voice
print is embedded with the speaker encoder that ships inside the ``Resemblyzer`` wheel
(256-d, L2-normed; same speaker ~0.78-0.91 cosine on clean speech, different ~0.38-0.67,
lower under music); the cues are clustered (average-linkage on cosine similarity, stop
below ``cluster_threshold``); each cluster's centroid is matched against the series'
speaker store (voice prints per label, ``speakers.json`` in the series state folder, see
``locpipe.localize.voices.series_state_dir``) so a known voice gets its old label and a new voice
the next free one (S1, S2, ...). Cues too short to embed take the label of the nearest
embedded cue in time.

Without Resemblyzer (the ``speakers`` extra) nothing fails: every cue is S1 and the
artifact says why, for QC.

Pure functions (``agglomerate``, ``match_clusters``, ``update_store``, ``estimate_pitch``,
``assign_labels``) carry the decisions; the encoder, WAV reading and the locked store
update around them are thin.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict

from locpipe.artifacts import CueSpeaker, SpeakerLabels, SpeakerSummary, Transcript
from locpipe.backends.speaker.resemblyzer_encoder import (
    BACKEND,
    SpeakersUnavailable,
    embed_segments,
    load_encoder,
    model_version,
)
from locpipe.core.locks import beside, file_lock
from locpipe.core.store import atomic_write_text
from locpipe.errors import ConfigError
from locpipe.media.audio import SAMPLE_RATE, read_wav_16k

log = logging.getLogger(__name__)

STORE_FILE = "speakers.json"
#: label of the only speaker when labels cannot be computed
FALLBACK_LABEL = "S1"
LABEL_RE = re.compile(r"^S(\d+)$")
#: median F0 below this is read as a male voice, above FEMALE_HZ as female (between: unknown)
MALE_HZ = 160.0
FEMALE_HZ = 175.0


@dataclass(frozen=True)
class SpeakerOptions:
    """Knobs of the speaker stage; all of them are part of its cache key."""

    #: cues shorter than this (seconds) are not embedded: they take the nearest cue's label
    min_seconds: float = 0.7
    #: clusters merge while their average cosine similarity is at least this (music under
    #: the dialogue lowers same-speaker similarity to ~0.65-0.85 on the sample episode)
    cluster_threshold: float = 0.58
    #: an episode cluster takes a series label when its centroid is at least this similar
    match_threshold: float = 0.72


# --------------------------------------------------------------------------- store (model + pure updates)


class StoredSpeaker(BaseModel):
    model_config = ConfigDict(extra="ignore")

    #: L2-normed mean voice print of everything heard from this speaker
    centroid: list[float]
    seconds: float = 0.0
    cues: int = 0
    episodes: list[str] = []
    pitch_hz: float | None = None


class SpeakerStore(BaseModel):
    """A series' voice prints by label: what makes S2 mean the same person in every episode."""

    model_config = ConfigDict(extra="ignore")

    version: int = 1
    #: random id made with the store: part of the stage cache key, so a deleted (reset)
    #: store relabels every episode instead of mixing old and new labels
    store_id: str = ""
    model: str = ""
    speakers: dict[str, StoredSpeaker] = {}


def label_number(label: str) -> int:
    m = LABEL_RE.match(label)
    return int(m.group(1)) if m else 0


def next_labels(existing: list[str], count: int) -> list[str]:
    """``count`` fresh labels after the highest existing S<n>."""
    start = max((label_number(x) for x in existing), default=0)
    return [f"S{start + i + 1}" for i in range(count)]


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else v


def match_clusters(centroids: np.ndarray, store: SpeakerStore, threshold: float) -> list[tuple[str, float | None]]:
    """Label for each episode cluster: the most similar stored speaker above ``threshold``.

    One-to-one, most similar pairs first (two voices in one episode are two people); the
    clusters left over get fresh labels in cluster order. Returns (label, similarity or None).
    """
    labels: list[tuple[str, float | None] | None] = [None] * len(centroids)
    stored = list(store.speakers.items())
    if stored and len(centroids):
        prints = np.array([_unit(np.asarray(s.centroid, dtype=np.float32)) for _, s in stored])
        sims = np.asarray(centroids, dtype=np.float32) @ prints.T
        taken: set[int] = set()
        for flat in np.argsort(-sims, axis=None):
            ci, si = divmod(int(flat), len(stored))
            if sims[ci, si] < threshold:
                break
            if labels[ci] is None and si not in taken:
                labels[ci] = (stored[si][0], round(float(sims[ci, si]), 4))
                taken.add(si)
    fresh = iter(next_labels(list(store.speakers), sum(x is None for x in labels)))
    return [x if x is not None else (next(fresh), None) for x in labels]


def update_store(store: SpeakerStore, labels: list[str], centroids: np.ndarray, seconds: list[float],
                 cues: list[int], pitches: list[float | None], episode: str) -> SpeakerStore:
    """The store with this episode's clusters folded in (centroids weighted by seconds heard)."""
    speakers = dict(store.speakers)
    for label, cent, secs, n, pitch in zip(labels, centroids, seconds, cues, pitches, strict=True):
        old = speakers.get(label)
        if old is None:
            speakers[label] = StoredSpeaker(centroid=[round(float(x), 6) for x in _unit(cent)], seconds=round(secs, 3),
                                            cues=n, episodes=[episode], pitch_hz=pitch)
            continue
        merged = _unit(np.asarray(old.centroid, dtype=np.float64) * old.seconds + np.asarray(cent) * secs)
        total = old.seconds + secs
        if pitch is not None and old.pitch_hz is not None:
            pitch = (old.pitch_hz * old.seconds + pitch * secs) / total
        speakers[label] = StoredSpeaker(
            centroid=[round(float(x), 6) for x in merged], seconds=round(total, 3), cues=old.cues + n,
            episodes=old.episodes + ([episode] if episode not in old.episodes else []),
            pitch_hz=round(pitch, 1) if pitch is not None else old.pitch_hz)
    return store.model_copy(update={"speakers": speakers})


# --------------------------------------------------------------------------- pure decisions


def agglomerate(embeddings: np.ndarray, threshold: float) -> list[int]:
    """Average-linkage clustering on cosine similarity; cluster ids numbered by first appearance.

    Merges the two most similar clusters (mean pairwise similarity) while that similarity
    is at least ``threshold``. Average linkage, unlike single linkage, does not chain two
    speakers together through one ambiguous cue.
    """
    n = len(embeddings)
    if n == 0:
        return []
    e = np.asarray(embeddings, dtype=np.float64)
    sums = e @ e.T  # sum of pairwise similarities between clusters (singletons: the similarity)
    sizes = np.ones(n)
    alive = list(range(n))
    members: dict[int, list[int]] = {i: [i] for i in range(n)}
    while len(alive) > 1:
        idx = np.array(alive)
        avg = sums[np.ix_(idx, idx)] / np.outer(sizes[idx], sizes[idx])
        np.fill_diagonal(avg, -np.inf)
        flat = int(np.argmax(avg))
        a, b = divmod(flat, len(idx))
        if avg[a, b] < threshold:
            break
        ka, kb = int(idx[min(a, b)]), int(idx[max(a, b)])
        sums[ka, :] += sums[kb, :]
        sums[:, ka] += sums[:, kb]
        sizes[ka] += sizes[kb]
        members[ka] += members.pop(kb)
        alive.remove(kb)
    order = sorted(members.values(), key=min)
    ids = [0] * n
    for cid, group in enumerate(order):
        for i in group:
            ids[i] = cid
    return ids


def centroids_of(embeddings: np.ndarray, ids: list[int]) -> np.ndarray:
    k = max(ids) + 1 if ids else 0
    e = np.asarray(embeddings, dtype=np.float64)
    return np.array([_unit(e[[i for i, c in enumerate(ids) if c == cid]].mean(axis=0)) for cid in range(k)])


def assign_labels(cue_spans: list[tuple[int, float, float]], embedded: dict[int, str]) -> list[CueSpeaker]:
    """Every cue's label: its own when embedded, else the nearest embedded cue's in time."""
    if not embedded:
        return [CueSpeaker(index=i, speaker=FALLBACK_LABEL, method="fallback") for i, _, _ in cue_spans]
    mids = {i: (s + e) / 2 for i, s, e in cue_spans}
    out = []
    for i, start, end in cue_spans:
        if i in embedded:
            out.append(CueSpeaker(index=i, speaker=embedded[i], method="embedded"))
            continue
        nearest = min(embedded, key=lambda j: (abs(mids[j] - (start + end) / 2), j))
        out.append(CueSpeaker(index=i, speaker=embedded[nearest], method="nearest"))
    return out


def estimate_pitch(audio: np.ndarray, sample_rate: int = SAMPLE_RATE, fmin: float = 70.0,
                   fmax: float = 400.0) -> float | None:
    """Median fundamental frequency (Hz) of the voiced 40 ms frames, by autocorrelation.

    Cheap and good enough to tell a low from a high voice when picking a dub voice; None
    when fewer than 5 frames are clearly periodic.
    """
    frame, hop = int(0.04 * sample_rate), int(0.01 * sample_rate)
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size < frame:
        return None
    frames = np.lib.stride_tricks.sliding_window_view(x, frame)[::hop]
    frames = frames - frames.mean(axis=1, keepdims=True)
    energy = np.sqrt((frames ** 2).mean(axis=1))
    loud = energy > max(1e-3, 0.3 * float(np.percentile(energy, 90)))
    frames = frames[loud]
    if len(frames) < 5:
        return None
    spec = np.fft.rfft(frames * np.hanning(frame), n=2 * frame, axis=1)
    ac = np.fft.irfft(np.abs(spec) ** 2, axis=1)[:, :frame]
    lo, hi = int(sample_rate / fmax), min(frame - 1, int(sample_rate / fmin))
    norm = ac[:, lo:hi] / np.maximum(ac[:, :1], 1e-12)
    lag = norm.argmax(axis=1)
    periodic = norm[np.arange(len(lag)), lag] > 0.5
    if periodic.sum() < 5:
        return None
    return round(float(np.median(sample_rate / (lag[periodic] + lo))), 1)


def gender_from_pitch(pitch_hz: float | None) -> str:
    if pitch_hz is None:
        return "unknown"
    if pitch_hz < MALE_HZ:
        return "male"
    if pitch_hz > FEMALE_HZ:
        return "female"
    return "unknown"


# --------------------------------------------------------------------------- I/O shells


def locked(path: Path):
    """Exclusive lock beside ``path``: parallel episodes of one series update it in turn."""
    return file_lock(beside(path))


def load_store(path: Path) -> SpeakerStore:
    if not path.exists():
        return SpeakerStore()
    try:
        return SpeakerStore.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ConfigError(path, "", f"unreadable speaker store ({exc}); delete it to start the series' labels "
                                    "afresh") from None


def ensure_store(path: Path) -> str:
    """The store's id, creating an empty store first when there is none."""
    with locked(path):
        store = load_store(path)
        if not store.store_id:
            store = store.model_copy(update={"store_id": uuid.uuid4().hex[:12], "model": model_version() or ""})
            atomic_write_text(path, store.model_dump_json())
        return store.store_id


def fallback_labels(transcript: Transcript, reason: str) -> SpeakerLabels:
    cues = [CueSpeaker(index=c.index, speaker=FALLBACK_LABEL, method="fallback") for c in transcript.cues]
    secs = sum(c.end - c.start for c in transcript.cues)
    speakers = [SpeakerSummary(label=FALLBACK_LABEL, cues=len(cues), seconds=round(secs, 3))] if cues else []
    return SpeakerLabels(available=False, model="", cues=cues, speakers=speakers, notes=[reason])


def label_speakers(transcript: Transcript, audio_16k: Path, store_path: Path | None, episode: str,
                   opts: SpeakerOptions = SpeakerOptions(), encoder=None, threads: int = 0) -> SpeakerLabels:
    """Speaker labels for ``transcript``'s cues, matched against (and added to) the series store.

    Never raises for a missing model: the labels fall back to S1 with a note. ``store_path``
    None labels the episode on its own (S1, S2, ... by first appearance).
    """
    started = time.perf_counter()
    if encoder is None:
        try:
            encoder = load_encoder(threads)
        except SpeakersUnavailable as exc:
            log.warning("%s: every cue labelled %s", exc, FALLBACK_LABEL)
            return fallback_labels(transcript, f"speaker labels unavailable, every cue is {FALLBACK_LABEL}: {exc}")
    audio = read_wav_16k(audio_16k)
    spans = [(c.index, c.start, c.end) for c in transcript.cues]
    todo = [(i, s, e) for i, s, e in spans if e - s >= opts.min_seconds]
    prints = embed_segments(encoder, audio, [(s, e) for _, s, e in todo])
    kept = [(t, p) for t, p in zip(todo, prints, strict=True) if p is not None]
    version = model_version() or BACKEND
    notes = []
    if not kept:
        notes.append(f"no cue of at least {opts.min_seconds} s with voice: every cue is {FALLBACK_LABEL}")
        labels = fallback_labels(transcript, notes[0])
        return labels.model_copy(update={"available": True, "model": version,
                                         "seconds": round(time.perf_counter() - started, 3)})
    emb = np.array([p for _, p in kept])
    ids = agglomerate(emb, opts.cluster_threshold)
    cents = centroids_of(emb, ids)
    groups = [[span for (span, _), c in zip(kept, ids) if c == cid] for cid in range(len(cents))]
    seconds = [sum(e - s for _, s, e in g) for g in groups]
    pitches = [estimate_pitch(np.concatenate([audio[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for _, s, e in g]))
               for g in groups]
    counts = [len(g) for g in groups]
    if store_path is not None:
        with locked(store_path):
            store = load_store(store_path)
            matched = match_clusters(cents, store, opts.match_threshold)
            names = [label for label, _ in matched]
            store = update_store(store, names, cents, seconds, counts, pitches, episode)
            if not store.store_id:
                store = store.model_copy(update={"store_id": uuid.uuid4().hex[:12]})
            atomic_write_text(store_path, store.model_copy(update={"model": version}).model_dump_json())
    else:
        matched = [(label, None) for label in next_labels([], len(cents))]
    names = [label for label, _ in matched]
    embedded = {span[0]: names[cid] for (span, _), cid in zip(kept, ids)}
    summaries = [SpeakerSummary(label=names[k], cues=counts[k], seconds=round(seconds[k], 3), pitch_hz=pitches[k],
                                gender=gender_from_pitch(pitches[k]), matched=matched[k][1])
                 for k in range(len(cents))]
    cues = assign_labels(spans, embedded)
    for cue in cues:  # cues that only took a neighbour's label count for that speaker too
        if cue.method == "nearest":
            summary = next(s for s in summaries if s.label == cue.speaker)
            summary.cues += 1
    elapsed = time.perf_counter() - started
    log.info("speakers: %d cue(s) embedded, %d speaker(s) %s in %.1f s", len(kept), len(cents),
             ", ".join(f"{s.label}{'*' if s.matched is None else ''}" for s in summaries), elapsed)
    return SpeakerLabels(available=True, model=version, cues=cues, speakers=summaries, notes=notes,
                         store=str(store_path or ""), seconds=round(elapsed, 3))


def apply_labels(transcript: Transcript, labels: SpeakerLabels) -> Transcript:
    """The transcript with each cue's ``speaker`` set from ``labels`` (matched by cue index)."""
    by_index = {c.index: c.speaker for c in labels.cues}
    return transcript.model_copy(update={"cues": [c.model_copy(update={"speaker": by_index.get(c.index, c.speaker)})
                                                  for c in transcript.cues]})
