"""Many distributors of one market at little more than the cost of one export (A/B model).

A market's episode that goes to many distributors is not encoded once per distributor:

* **Base, once per market** (``prepare_base``, a task of the episode's shared render): the
  ledger issues an A/B *batch* payload; one decode feeds two encodes, variant A and
  variant B of the forensic mark (the batch's common layer plus the A/B layer at +1 or -1
  in every GOP, see locpipe.watermark.ab), each cut into closed-GOP MPEG-TS segments.
  Both carry the subtitles and a distributor-neutral visible mark (the template without
  ``{distributor}``/``{export_id}``). The mix is encoded to AAC once.
* **Per distributor** (``assemble``): the ledger gives the distributor a member index,
  whose keyed symbol sequence picks segment s from A (+1) or B (-1). Only the *windows*
  that carry the visible distributor text (``watermark.distributor_window`` seconds in
  every ``distributor_every``, at keyed GOP-aligned places) are rendered for this
  distributor, from the source, with the same encoder settings and its own symbols; the
  sequence is then joined by stream copy and muxed with the AAC track.

Segments splice cleanly because every GOP is closed, starts on a keyframe at the same
frame in every encode, and keeps the source's timestamps (``-copyts``), so the windows'
segments drop into the base's timeline. ``tests/test_render_ab.py`` checks that an
assembled copy decodes frame for frame to the segments it was made of.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import shutil
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from locpipe.artifacts import ABBase, MediaInfo, RenderResult, SourceSubtitles, SubtitleTrack
from locpipe.config import Market, WatermarkPolicy
from locpipe.errors import MediaError
from locpipe.media.ass import build_ass
from locpipe.media.ffmpeg import run_ffmpeg
from locpipe.media.subtitles import write_ass
from locpipe.render import encode as render
from locpipe.render import graph
from locpipe.render.visible import plan_visible_watermark
from locpipe.watermark.forensic import ForensicSpec

log = logging.getLogger(__name__)

SEGMENT_PATTERN = "%05d.ts"
AUDIO_NAME = "audio.m4a"
#: PRNG domain of the window places (so they are unrelated to any other use of the ids)
WINDOW_DOMAIN = b"locpipe/distributor-windows/v1\x00"


# --------------------------------------------------------------------------- pure parts


#: the NTSC rates, which probes report rounded (29.97)
NTSC_RATES = (Fraction(24000, 1001), Fraction(30000, 1001), Fraction(60000, 1001))


def exact_rate(profile_fps: float | None, source_fps: float) -> Fraction:
    """The output frame rate as an exact ratio: 29.97 (or 29.97003) -> 30000/1001, 25.0 -> 25."""
    fps = profile_fps or source_fps
    for rate in NTSC_RATES:
        if abs(fps - rate) < 0.006:
            return rate
    return Fraction(fps).limit_denominator(1001)


def frame_count(duration: float, rate: Fraction) -> int:
    """Frames an encode of ``duration`` seconds at ``rate`` holds (``-t`` keeps pts < duration)."""
    return max(1, math.ceil(duration * rate - 1e-6))


def neutral_template(policy: WatermarkPolicy) -> WatermarkPolicy:
    """The visible-mark policy of the shared base: the template without the per-distributor
    fields (those appear only in the distributor's windows)."""
    text = policy.template.replace("{distributor}", "").replace("{export_id}", "")
    return policy.model_copy(update={"template": " ".join(text.split())})


def plan_windows(n_segments: int, segment_seconds: float, policy: WatermarkPolicy, seed: str) -> list[tuple[int, int]]:
    """GOP-segment ranges [s0, s1) that carry the visible distributor text.

    One window of ``distributor_window`` seconds (whole segments, at least one) per
    ``distributor_every`` seconds of episode (at least one window), each at a keyed place
    inside its share of the episode: deterministic per seed (batch and member), different
    between distributors.
    """
    length = max(1, round(policy.distributor_window / segment_seconds))
    length = min(length, n_segments)
    count = max(1, round(n_segments * segment_seconds / policy.distributor_every))
    count = min(count, n_segments // length)
    digest = hashlib.sha256(WINDOW_DOMAIN + seed.encode("utf-8")).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    windows = []
    for i in range(count):
        lo, hi = i * n_segments // count, (i + 1) * n_segments // count - length
        start = lo + min(int(rng.random() * (hi - lo + 1)), hi - lo)
        windows.append((start, start + length))
    return windows


def sequence(symbols: np.ndarray, windows: list[tuple[int, int]]) -> list[tuple[str, int]]:
    """Where each segment comes from: ("A" | "B", s) or ("W<i>", s - window start)."""
    out = []
    for s, c in enumerate(symbols):
        hit = next((i for i, (a, b) in enumerate(windows) if a <= s < b), None)
        out.append((f"W{hit}", s - windows[hit][0]) if hit is not None else ("A" if c > 0 else "B", s))
    return out


# --------------------------------------------------------------------------- base (once per market)


@dataclass(frozen=True)
class BaseJob:
    market: Market
    audio_wav: Path
    track: SubtitleTrack
    episode: str
    out_dir: Path
    forensic: ForensicSpec | None


def prepare_base(source: MediaInfo, job: BaseJob) -> render.Prepared:
    """The A and B variants of one market as a task of the episode's shared render.

    Issues the batch payload (withdrawn if the run fails); without a forensic spec there
    is a single variant (A) and every distributor differs only in its windows.
    """
    from locpipe.watermark import ab
    from locpipe.watermark.ledger import Ledger

    profile = job.market.profile
    rate = exact_rate(graph.output_fps(profile, source.fps), source.fps)
    gop = graph.gop_frames(float(rate))
    n_frames = frame_count(source.duration, rate)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    neutral = job.market.model_copy(update={"config": job.market.config.model_copy(
        update={"watermark": neutral_template(job.market.config.watermark)})})
    mark = plan_visible_watermark(neutral, duration=source.duration, distributor="", episode=job.episode,
                                  export_id=f"base:{job.market.code}:{job.episode}")
    ass_path = write_ass(build_ass(job.track, job.market.config.subtitles, profile, mark.layer() if mark else None),
                         job.out_dir / "base.ass")
    batch = None
    if job.forensic:
        batch, _ = Ledger(job.forensic.ledger).issue_batch(
            market=job.market.code, episode=job.episode, distributors=[], export_ids=[], fps=rate, gop=gop,
            n_frames=n_frames)
    variants = ("A", "B") if batch else ("A",)
    patterns: dict[str, Path] = {}
    encodes = []
    for v in variants:
        (job.out_dir / f".{v}").mkdir(exist_ok=True)
        if batch:
            symbols = np.full(ab.n_segments_for(n_frames, gop) + 1, 1 if v == "A" else -1)
            luma = ab.episode_pattern(job.forensic.key, batch, fps=rate, n_frames=n_frames + gop, gop=gop,
                                      symbols=symbols)
            patterns[v] = ab.write_pattern_clip(job.out_dir / f".pattern-{v}.y4m", luma, rate)
        encodes.append(graph.Encode(profile, ass_path, job.out_dir / f".{v}" / SEGMENT_PATTERN,
                                     pattern=patterns.get(v), pattern_loop=False, segmented=True,
                                     mask=job.market.config.source_subtitles.mask,
                                     mask_static=job.market.config.source_subtitles.mask_static))

    def finish(seconds: float) -> ABBase:
        t0 = time.monotonic()
        audio = job.out_dir / f".{AUDIO_NAME}"
        run_ffmpeg(["-i", str(job.audio_wav),
                    "-filter_complex", graph.audio_graph(profile.audio_sample_rate, input_index=0),
                    "-map", "[a]", "-t", f"{source.duration:.3f}", "-c:a", "aac", "-b:a", profile.audio_bitrate,
                    "-ar", str(profile.audio_sample_rate), "-ac", "2", "-f", "mp4", str(audio)],
                   what=f"audio of {job.episode} for {job.market.code}")
        os.replace(audio, job.out_dir / AUDIO_NAME)
        counts = {}
        for v in variants:
            os.replace(job.out_dir / f".{v}", job.out_dir / v)
            counts[v] = len(list((job.out_dir / v).glob("*.ts")))
        # the source's own frame count decides (a container duration may be a frame off the
        # estimate); A and B must agree segment for segment
        n_segments = counts[variants[0]]
        if len(set(counts.values())) != 1 or abs(n_segments - -(-n_frames // gop)) > 1:
            raise MediaError(f"A/B base of {job.episode} for {job.market.code}: expected "
                             f"{-(-n_frames // gop)} GOP segments per variant, got {counts}")
        return ABBase(batch_payload=batch.hex if batch else "", fps=f"{rate.numerator}/{rate.denominator}",
                      gop=gop, n_frames=min(n_frames, n_segments * gop), n_segments=n_segments,
                      variants=list(variants), audio=AUDIO_NAME,
                      ass="base.ass", watermark_text=mark.text if mark else "",
                      ffmpeg_seconds=round(seconds + time.monotonic() - t0, 3))

    def abort() -> None:
        for v in variants:
            shutil.rmtree(job.out_dir / f".{v}", ignore_errors=True)
        if batch:
            Ledger(job.forensic.ledger).withdraw_batch(batch)

    def cleanup() -> None:
        for p in patterns.values():
            p.unlink(missing_ok=True)

    return render.Prepared(encodes, finish, abort, cleanup, label=f"{job.market.code} A/B base ({'+'.join(variants)})")


# --------------------------------------------------------------------------- per distributor


@dataclass(frozen=True)
class DistributorJob:
    market: Market
    base: ABBase
    base_dir: Path
    track: SubtitleTrack
    track_dir: Path
    episode: str
    distributor: str
    export_id: str
    out_dir: Path
    forensic: ForensicSpec | None


def member_index(job: DistributorJob) -> int | None:
    """The distributor's index in the batch (added to the ledger on first use, atomically:
    two renders of the same copy get the same index)."""
    if not job.base.batch_payload or job.forensic is None:
        return None
    from locpipe.watermark.ledger import Ledger
    from locpipe.watermark.payload import Payload

    return Ledger(job.forensic.ledger).ensure_member(Payload.from_hex(job.base.batch_payload),
                                                    distributor=job.distributor, export_id=job.export_id,
                                                    file=job.forensic.export_file)


def assemble(source: MediaInfo, job: DistributorJob, *, source_subs: SourceSubtitles | None = None) -> RenderResult:
    """One distributor's export: its windows rendered, every other segment stream-copied."""
    from locpipe.watermark import ab
    from locpipe.watermark.payload import Payload

    t0 = time.monotonic()
    base, profile = job.base, job.market.profile
    rate, gop = Fraction(base.fps), base.gop
    seg_seconds = gop / float(rate)
    job.out_dir.mkdir(parents=True, exist_ok=True)
    index = member_index(job)
    batch = Payload.from_hex(base.batch_payload) if base.batch_payload else None
    symbols = (ab.ab_symbols(job.forensic.key, batch, index, base.n_segments) if batch
               else np.ones(base.n_segments, dtype=np.int8))
    windows = plan_windows(base.n_segments, seg_seconds, job.market.config.watermark,
                           seed=f"{base.batch_payload}:{job.export_id}")
    mark = plan_visible_watermark(job.market, duration=source.duration, distributor=job.distributor,
                                  episode=job.episode, export_id=job.export_id)
    if mark is None:  # no visible mark: nothing is specific to the distributor but the sequence
        windows = []
    ass_path = write_ass(build_ass(job.track, job.market.config.subtitles, profile, mark.layer() if mark else None),
                         job.out_dir / graph.ASS_NAME)
    for i, (s0, s1) in enumerate(windows):
        _render_window(source, job, i, (s0, s1), symbols, ass_path, batch, source_subs)
    files = [_segment_file(job, kind, s) for kind, s in sequence(symbols, windows)]
    final = job.out_dir / graph.VIDEO_NAME
    partial = job.out_dir / f".{graph.VIDEO_NAME}.{os.getpid()}.partial"
    joined = job.out_dir / ".video.ts"
    try:
        with joined.open("wb") as out:
            for f in files:
                with f.open("rb") as seg:
                    shutil.copyfileobj(seg, out)
        run_ffmpeg(["-i", str(joined), "-i", str(job.base_dir / base.audio), "-map", "0:v:0", "-map", "1:a:0",
                    "-c", "copy", "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", str(partial)],
                   what=f"assembly of {job.episode} for {job.market.code}/{job.distributor}")
        os.replace(partial, final)
    finally:
        partial.unlink(missing_ok=True)
        joined.unlink(missing_ok=True)
        for i in range(len(windows)):
            shutil.rmtree(job.out_dir / f".W{i}", ignore_errors=True)
    seconds = time.monotonic() - t0
    log.info("assembled %s for %s from %d A/B segments and %d window(s) in %.2f s", job.episode, job.distributor,
             len(files), len(windows), seconds)
    return RenderResult(
        video=graph.VIDEO_NAME,
        srt=render.copy_sidecar(job.track_dir / job.track.srt, job.out_dir / "export.srt"),
        vtt=render.copy_sidecar(job.track_dir / job.track.vtt, job.out_dir / "export.vtt"),
        export_id=job.export_id, watermark_text=mark.text if mark else "", ffmpeg_seconds=round(seconds, 3),
        forensic_payload=base.batch_payload, ab_member=index,
        distributor_windows=[(round(a * seg_seconds, 3), round(min(b * seg_seconds, source.duration), 3))
                             for a, b in windows])


def _segment_file(job: DistributorJob, kind: str, s: int) -> Path:
    folder = job.out_dir / f".{kind}" if kind.startswith("W") else job.base_dir / kind
    return folder / (SEGMENT_PATTERN % s)


def _render_window(source: MediaInfo, job: DistributorJob, i: int, span: tuple[int, int], symbols: np.ndarray,
                   ass_path: Path, batch, source_subs: SourceSubtitles | None) -> None:
    """Re-render segments [s0, s1) for the distributor: its visible text and its symbols."""
    from locpipe.watermark import ab

    base, profile = job.base, job.market.profile
    rate, gop = Fraction(base.fps), base.gop
    f0, f1 = span[0] * gop, min(span[1] * gop, base.n_frames)
    t0, t1 = float(f0 / rate), float(f1 / rate)
    folder = job.out_dir / f".W{i}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    pattern = None
    if batch is not None:
        luma = ab.episode_pattern(job.forensic.key, batch, fps=rate, n_frames=f1 - f0 + gop, gop=gop,
                                  symbols=np.concatenate([symbols, symbols[-1:]]), start_frame=f0)
        pattern = ab.write_pattern_clip(folder / "pattern.y4m", luma, rate)
    encode = graph.Encode(profile, ass_path, folder / SEGMENT_PATTERN, pattern=pattern, pattern_loop=False,
                           pattern_start=t0, segmented=True, mask=job.market.config.source_subtitles.mask,
                           mask_static=job.market.config.source_subtitles.mask_static)

    def finish(_seconds: float) -> None:
        made = len(list(folder.glob("*.ts")))  # numbered from 0: their place in the window
        if made != span[1] - span[0]:
            raise MediaError(f"window {t0:.2f}-{t1:.2f} s of {job.episode}: expected {span[1] - span[0]} "
                             f"segments, got {made}")

    # the window's folder goes when the copy is assembled (or fails): nothing to undo here
    task = render.Prepared([encode], finish, abort=lambda: None,
                           label=f"{job.distributor} window {t0:.2f}-{t1:.2f} s")
    render.run_shared(source, [task], source_subs=source_subs, window=(t0, t1))
