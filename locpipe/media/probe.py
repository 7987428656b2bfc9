"""Probe a media file with PyAV (libav's own demuxers; the imageio ffmpeg has no ffprobe).

The source is probed once, at ingest: every stream fact a later stage needs (audio present,
colour matrix tag, rotation, ...) goes into ``MediaInfo`` rather than being read again.

Turns every way a file can be unusable into an ``InputError`` that names the file and
says what is wrong, so the batch report tells the operator what to fix.
"""

from __future__ import annotations

import hashlib
from fractions import Fraction
from pathlib import Path

from locpipe.artifacts import MediaInfo
from locpipe.errors import InputError
from locpipe.media.ffmpeg import media_input

_HASH_CHUNK = 1 << 20
#: a stream may end this much before the duration its header declares (encoder delay, a
#: short last frame, audio priming) and still be complete: the larger of the two
TRUNCATION_SLACK_SECONDS = 0.5
TRUNCATION_SLACK_FRACTION = 0.02
#: seconds before a stream's last packet that are decoded to prove its data decodes
TAIL_SECONDS = 1.0


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def probe(path: Path, *, require_audio: bool = True) -> MediaInfo:
    """Read stream facts of ``path``; raise InputError with a specific reason if unusable."""
    import av

    if not path.exists():
        raise InputError(path, "file does not exist")
    size = path.stat().st_size
    if size == 0:
        raise InputError(path, "file is empty (0 bytes)")
    try:
        container = av.open(media_input(path))
    except av.error.InvalidDataError:
        raise InputError(path, _sniff(path)) from None
    except av.error.FFmpegError as exc:
        raise InputError(path, f"cannot open as media: {exc}") from None
    with container:
        videos = [s for s in container.streams if s.type == "video" and not _is_cover_art(s)]
        audios = [s for s in container.streams if s.type == "audio"]
        if not videos:
            raise InputError(path, "has no video stream")
        v = videos[0]
        if not v.codec_context or not v.codec_context.width:
            raise InputError(path, "video stream has no decodable picture (unknown size)")
        duration = _duration(container, v)
        if duration <= 0:
            raise InputError(path, "duration is zero or unknown (truncated file?)")
        if require_audio and not audios:
            raise InputError(path, "has no audio stream (a dialogue track is needed to transcribe and dub)")
        matrix = matrix_tag(v.codec_context.colorspace)  # the header's tag, before decoding
        first = _first_frame(container, v, path)
        check_complete(container, [v, *audios[:1]], duration, path)
        width, height = v.codec_context.width, v.codec_context.height
        sar = float(v.sample_aspect_ratio) if v.sample_aspect_ratio else 1.0
        rotation = int(getattr(first, "rotation", 0) or 0) % 360
        dw, dh = round(width * sar), height
        if rotation in (90, 270):
            dw, dh = dh, dw
        fps = float(v.average_rate or v.guessed_rate or Fraction(0))
        a = audios[0] if audios else None
        return MediaInfo(
            path=media_input(path),
            sha256=file_sha256(path),
            size=size,
            duration=round(duration, 3),
            width=width,
            height=height,
            display_width=dw,
            display_height=dh,
            fps=round(fps, 3),
            rotation=rotation,
            sar=sar,
            video_codec=v.codec_context.name,
            has_audio=a is not None,
            audio_codec=a.codec_context.name if a else "",
            audio_channels=a.codec_context.channels if a else 0,
            sample_rate=a.codec_context.sample_rate if a else 0,
            color_matrix=matrix,
        )


def matrix_tag(colorspace) -> int | None:
    """A stream's YCbCr matrix tag as an AVColorSpace code; None when unspecified (code 2) or
    not a code at all (an untagged file is read as such, never as an error)."""
    try:
        code = int(colorspace or 2)
    except (TypeError, ValueError):
        return None
    return None if code == 2 else code


def _sniff(path: Path) -> str:
    """Say why a file ffmpeg cannot open is unreadable, from its first bytes."""
    head = path.open("rb").read(4096)
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "MP4/MOV container is corrupt or truncated (its index, the moov atom, is missing or damaged)"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "Matroska/WebM file is corrupt or truncated"
    try:
        text = head.decode("utf-8")
        if all(ch.isprintable() or ch.isspace() for ch in text):
            return "is a text file, not a video (wrong extension?)"
    except UnicodeDecodeError:
        pass
    return "not a media file ffmpeg can read (unknown or corrupt format)"


def _is_cover_art(stream) -> bool:
    """MP3/M4A cover images show up as a one-frame video stream; they are not episodes."""
    import av

    return bool(stream.disposition & av.stream.Disposition.attached_pic)


def _duration(container, v) -> float:
    if v.duration and v.time_base:
        return float(v.duration * v.time_base)
    if container.duration:
        return container.duration / 1_000_000
    return 0.0


def _first_frame(container, v, path: Path):
    """Decode the first video frame: catches files whose header is fine but data is not.

    The frame also carries the display rotation (the display-matrix side data).
    """
    import av

    try:
        for frame in container.decode(v):
            if frame is not None:
                return frame
    except av.error.FFmpegError as exc:
        raise InputError(path, f"video data is corrupt: {exc}") from None
    raise InputError(path, "video stream contains no decodable frames")


def _seconds(stream, ts: int | None) -> float:
    """A stream timestamp as seconds from the stream's start."""
    if ts is None or not stream.time_base:
        return 0.0
    return float((ts - (stream.start_time or 0)) * stream.time_base)


def _declared(stream, container_duration: float) -> float:
    return _seconds(stream, stream.duration + (stream.start_time or 0)) if stream.duration else container_duration


def check_complete(container, streams: list, duration: float, path: Path) -> None:
    """Raise InputError when the file ends before its header says: truncated or corrupt.

    Why here: a file cut off mid-copy still has a complete header (the index is at the front
    after ``+faststart``), probes fine and decodes its first frame, then fails minutes later
    deep inside OCR or ASR with a bare decoder error. The check is cheap: packets are read,
    not decoded (0.04 s for 30 s of 720p), then the last second of each stream is decoded,
    which for video means from the keyframe before it: at most one GOP (0.7 s for a 30 s
    720p clip with x264's default 8 s GOP, ``benchmarks/hostile.py``). Corruption in the
    middle of otherwise complete data is left to the decoders of the later stages.
    """
    import av

    ends = {s.index: 0.0 for s in streams}
    try:
        for packet in container.demux(*streams):
            if packet.size and packet.pts is not None:
                end = _seconds(packet.stream, packet.pts + (packet.duration or 0))
                ends[packet.stream.index] = max(ends[packet.stream.index], end)
    except av.error.FFmpegError as exc:
        reached = max(ends.values(), default=0.0)
        raise InputError(path, f"truncated or corrupt: unreadable after {reached:.1f} s of the {duration:.1f} s "
                               f"its header declares ({exc})") from None
    for stream in streams:
        declared, got = _declared(stream, duration), ends[stream.index]
        if declared - got > max(TRUNCATION_SLACK_SECONDS, TRUNCATION_SLACK_FRACTION * declared):
            raise InputError(path, f"truncated or corrupt: decodes to {got:.1f} s of the {declared:.1f} s "
                                   f"its header declares ({stream.type})")
    for stream in streams:
        _decode_tail(container, stream, ends[stream.index], path)


def _decode_tail(container, stream, end: float, path: Path) -> None:
    """Decode the last ``TAIL_SECONDS`` of ``stream``: its packets exist, do they decode?"""
    import av

    start = max(0.0, end - TAIL_SECONDS)
    try:
        container.seek(int(start / stream.time_base) + (stream.start_time or 0), stream=stream, backward=True)
        decoded = sum(1 for _ in container.decode(stream))
    except av.error.FFmpegError as exc:
        raise InputError(path, f"truncated or corrupt: {stream.type} data near {start:.1f} s does not decode "
                               f"({exc})") from None
    if not decoded:
        raise InputError(path, f"truncated or corrupt: no {stream.type} frame decodes after {start:.1f} s")
