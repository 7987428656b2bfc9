"""Decoded pictures for analysis: luma frames of a video, sampled in time, with PyAV.

Two readers, one per consumer, because they trade speed against fidelity differently:

* :func:`iter_samples` (source subtitle OCR): reference frames only, no deblocking, full
  luma resolution kept and turned to the display orientation; scaled lazily, row bands at
  a time (:class:`Sample`).
* :func:`small_luma` (forensic watermark trace): every frame decoded (reference frames only
  with ``fast``, for QC of our own exports), the kept ones area-downscaled to a small fixed
  size at 16-bit precision (the mark lives far below the picture's resolution and in its
  lowest bits).

PyAV does not autorotate; ``rotation`` (from the probe) turns frames the way ffmpeg's
decoder does for render, so coordinates agree. Which frames are kept is decided by small
pure step functions (:func:`grid_step`, :func:`rate_step`).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np

from locpipe.errors import InputError
from locpipe.media.ffmpeg import media_input

T = TypeVar("T")

#: frame times within this of a sampling point count as on it (PTS rounding)
GRID_SLACK = 1e-3
RATE_SLACK = 1e-6


# --------------------------------------------------------------------------- which frames (pure)


def grid_step(t: float, next_t: float, period: float) -> tuple[bool, float]:
    """Sampling on the grid 0, period, 2 period, ...: keep the first frame at (or just before)
    each grid point. Returns (keep this frame at ``t``, the next grid point still to fill).

    A gap longer than a period (dropped or skipped frames) fills the points it spans with
    the one frame after it, so later samples stay on the grid.
    """
    if t < next_t - GRID_SLACK:
        return False, next_t
    while next_t <= t + GRID_SLACK:
        next_t += period
    return True, next_t


def rate_step(t: float, next_t: float | None, fps: float) -> tuple[bool, float]:
    """About ``fps`` frames per second from the first frame on (``next_t`` None before it).

    After a kept frame the next one is due a period later, but at least half a period
    after the frame itself: a late frame does not pull the next sample close behind it.
    """
    if next_t is None:
        next_t = t
    if t + RATE_SLACK < next_t:
        return False, next_t
    return True, max(next_t + 1.0 / fps, t + 0.5 / fps)


def rotate(luma: np.ndarray, rotation: int) -> np.ndarray:
    """A stored picture in the display orientation (``rotation``: degrees, as probed)."""
    k = (rotation % 360) // 90
    return np.rot90(luma, k) if k else luma


def work_scale(width: int, height: int, short_side: int) -> float:
    """Scale that brings the short side down to ``short_side`` (never up)."""
    return min(1.0, short_side / min(width, height))


# --------------------------------------------------------------------------- samples for OCR


class Sample:
    """One sampled frame: luma in display orientation, scaled on demand, rows at a time.

    Only the rows asked for are resized, so a 4K frame costs little more than a 720p one.
    """

    def __init__(self, t: float, luma: np.ndarray, scale: float):
        self.t, self.luma, self.scale = t, luma, scale
        self.width = max(2, round(luma.shape[1] * scale))
        self.height = max(2, round(luma.shape[0] * scale))

    def rows(self, r0: int, r1: int) -> np.ndarray:
        """Work-scale rows [r0, r1) (work pixels), full width."""
        import cv2

        s0 = int(r0 / self.scale)
        s1 = min(self.luma.shape[0], max(s0 + 1, round(r1 / self.scale)))
        part = self.luma[s0:s1]
        if self.scale == 1.0:
            return np.ascontiguousarray(part)
        return cv2.resize(part, (self.width, r1 - r0), interpolation=cv2.INTER_AREA)


def luma_plane(frame) -> np.ndarray:
    """A PyAV frame's luma plane as uint8 (a view for 8-bit YUV, converted otherwise)."""
    fmt = frame.format.name
    if fmt.startswith(("yuv", "yuvj", "nv")) and "p1" not in fmt and "le" not in fmt and "be" not in fmt:
        plane = frame.planes[0]
        buf = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        return buf[:, :plane.width]
    return frame.to_ndarray(format="gray")


def iter_samples(path: Path, *, rotation: int, fps: float, short_side: int) -> Iterator[Sample]:
    """A Sample about every 1/fps seconds, in the display orientation (ffmpeg's autorotate).

    Only reference frames are decoded and the deblocking filter is skipped: together
    about 60 % less decoding work on a typical H.264 stream; samples land on the next
    decodable frame, well inside the sample period, and text stays sharp enough to read.
    """
    import av

    period = 1.0 / fps
    with av.open(media_input(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        stream.codec_context.skip_frame = "NONREF"
        stream.codec_context.options = {"skip_loop_filter": "all"}
        scale = work_scale(stream.codec_context.width, stream.codec_context.height, short_side)
        next_t = 0.0
        for frame in container.decode(stream):
            t = frame.time
            if t is None:
                continue
            keep, next_t = grid_step(t, next_t, period)
            if keep:
                yield Sample(t, rotate(luma_plane(frame), rotation), scale)


def read_ahead(items: Iterator[T], depth: int = 4) -> Iterator[T]:
    """``items`` produced by a background thread, at most ``depth`` ahead of the consumer.

    For decoding beside analysis: PyAV decodes without the GIL, so the next samples are
    decoded while OCR reads the current one (on the 720x1280 sample decoding is about a
    third of the stage's CPU time; in series it was a third of its wall time too). The
    producer's exception is raised in the consumer; closing this generator (or leaving it
    early) stops the producer at its next item and closes ``items`` in its own thread.
    """
    done = object()
    q: queue.Queue = queue.Queue(max(1, depth))
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
            put((done, None))
        except BaseException as exc:  # handed to the consumer, raised there
            put((done, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="locpipe-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item, exc = q.get()
            if item is done:
                if exc is not None:
                    raise exc
                return
            yield item
    finally:
        stop.set()
        worker.join()


# --------------------------------------------------------------------------- small frames for tracing


def small_luma(video: Path, *, fps: float, width: int, height: int,
               fast: bool = False) -> tuple[np.ndarray, np.ndarray, int, int]:
    """About ``fps`` luma frames per second of ``video``, area-downscaled to ``width`` x ``height``.

    ``fast``: decode only reference frames and skip the deblocking filter (about 0.6x the
    decode time of an x264 export: its non-reference B-frames are never decoded). For our own
    exports in QC, where frames are plentiful; a leaked copy is traced with every frame.

    Returns (frame times in seconds as decoded, frames (n, height, width) float32 on the
    8-bit scale with 8 more bits of fraction, the stored picture width and height). Only
    the kept frames are converted (the decode itself is the cost: threaded). Raises
    InputError when the file has no video stream or cannot be decoded.
    """
    import av

    try:
        return _small_luma(av, video, fps, width, height, fast)
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(video, f"cannot decode the video: {exc}") from None


def _small_luma(av, video: Path, fps: float, width: int, height: int,
                fast: bool) -> tuple[np.ndarray, np.ndarray, int, int]:
    times, frames = [], []
    with av.open(media_input(video)) as container:
        if not container.streams.video:
            raise InputError(video, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if fast:
            stream.codec_context.skip_frame = "NONREF"
            stream.codec_context.options = {"skip_loop_filter": "all"}
        src_w, src_h = stream.codec_context.width, stream.codec_context.height
        next_t: float | None = None
        for frame in container.decode(stream):
            t = frame.time
            if t is None:
                continue
            keep, next_t = rate_step(t, next_t, fps)
            if not keep:
                continue
            small = frame.reformat(width=width, height=height, format="gray16le", interpolation="AREA")
            frames.append(small.to_ndarray().astype(np.float32) / 256.0)
            times.append(t)
    if not frames:
        return np.zeros(0), np.zeros((0, height, width), np.float32), src_w, src_h
    return np.asarray(times), np.stack(frames), src_w, src_h


# --------------------------------------------------------------------------- frames at given times


def luma_at(video: Path, times: list[float], *, short_side: int) -> list[tuple[float, np.ndarray]]:
    """Luma frames of ``video`` at (the first frame at or after) each of ``times``, scaled so
    the short side is ``short_side`` (never up): for reading a few frames of an export (QC)
    without decoding all of it. Seeks to the keyframe before each time and decodes forward."""
    import av
    import cv2

    out: list[tuple[float, np.ndarray]] = []
    with av.open(media_input(video)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for t in sorted(times):
            container.seek(int(max(0.0, t) / stream.time_base), stream=stream, backward=True)
            for frame in container.decode(stream):
                if frame.time is None or frame.time < t - GRID_SLACK:
                    continue
                luma = luma_plane(frame)
                k = work_scale(luma.shape[1], luma.shape[0], short_side)
                if k < 1.0:
                    luma = cv2.resize(luma, (round(luma.shape[1] * k), round(luma.shape[0] * k)),
                                      interpolation=cv2.INTER_AREA)
                out.append((float(frame.time), np.ascontiguousarray(luma)))
                break
    return out
