"""Invisible forensic watermark: a keyed, slowly breathing low-frequency luma pattern.

Design (why it survives the leak attacks)
-----------------------------------------
* **Space.** The frame is a coarse grid of GRID_W x GRID_H nodes (67 x 69 px cells at
  1080x1920). Every node carries one coded bit (or a known pilot bit) times a keyed
  pseudo-random sign; nodes of one bit are scattered over the frame by a keyed shuffle.
  The picture added to the luma is the bilinear interpolation of the node values: smooth,
  no edges, nearly all its energy far below what H.264 quantizes away or a downscale
  removes. A crop moves the grid; the detector searches crop windows (see detect.py).
* **Time.** The whole pattern is multiplied by a sine of period PERIOD seconds. The
  detector demodulates it like a lock-in amplifier (sine and cosine sums), so it needs no
  time alignment: an excerpt starting anywhere, a 24 fps conversion or dropped frames only
  change the unknown phase, which is estimated from the data. Static picture content,
  fades and exposure drifts have almost no energy at that frequency, so they cancel.
* **Payload.** 52 bits (payload.py) -> K=7 rate-1/2 convolutional code -> 116 coded bits,
  each on 3 nodes, plus 100 pilot nodes: 448 nodes. The pilot fixes the sign of the phase.

Embedding in the one-pass render
--------------------------------
One period of the pattern is written as a tiny lossless Y4M clip (GRID_W x GRID_H pixels,
PATTERN_FPS frames per second, chroma neutral) and looped; ffmpeg scales it up (bilinear:
that *is* the interpolation) and adds it with ``blend=all_mode=grainmerge`` (A + B - 128).
The upscale runs at the pattern's 10 fps, not the video's rate: blend reuses the last
pattern frame for the frames in between.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from locpipe.watermark.ecc import coded_length, conv_encode
from locpipe.watermark.payload import PAYLOAD_BITS, Payload

log = logging.getLogger(__name__)

GRID_W, GRID_H = 16, 28
N_NODES = GRID_W * GRID_H
N_CODED = coded_length(PAYLOAD_BITS)  # 116
REPEAT = 3  # nodes per coded bit
N_PILOT = N_NODES - REPEAT * N_CODED  # 100
PATTERN_FPS = 10
PERIOD = 1.0  # seconds: 1 Hz (see the module docstring)
PERIOD_FRAMES = int(round(PERIOD * PATTERN_FPS))
#: peak luma change at a node (8-bit levels); the pixel RMS is about 0.47 of it (bilinear
#: interpolation of random signs, times the sine), i.e. ~2.4 levels: PSNR ~40 dB
AMPLITUDE = 5.0
PATTERN_NAME = "forensic-pattern.y4m"
#: bump when the pattern or its layout changes: part of the render stage key
FORENSIC_VERSION = 1


@dataclass(frozen=True)
class ForensicSpec:
    """What a render needs to mark an export: the studio key, the ledger that records the
    payload, and the path the export will be published under (for the ledger entry)."""

    key: bytes
    ledger: Path
    export_file: str = ""


@dataclass(frozen=True)
class Carrier:
    """The keyed layout: which group each node belongs to and its pseudo-random sign.

    Groups 0..N_CODED-1 are the coded bits (REPEAT nodes each); group N_CODED is the
    pilot (N_PILOT nodes, always bit 0). Depends only on the key.
    """

    group: np.ndarray  # (GRID_H, GRID_W) int
    sign: np.ndarray  # (GRID_H, GRID_W) +-1.0

    @property
    def n_groups(self) -> int:
        return N_CODED + 1

    def group_matrix(self) -> np.ndarray:
        """(N_NODES, n_groups) 0/1 membership matrix (signs are applied separately)."""
        m = np.zeros((N_NODES, self.n_groups))
        m[np.arange(N_NODES), self.group.ravel()] = 1.0
        return m


def _rng(key: bytes, label: str) -> np.random.Generator:
    seed = hmac.new(key, f"locpipe-forensic-v1:{label}".encode(), hashlib.sha256).digest()
    return np.random.default_rng(np.frombuffer(seed, dtype=np.uint32))


def carrier(key: bytes) -> Carrier:
    """Keyed node layout: a shuffle spreads each bit's nodes across the frame."""
    rng = _rng(key, "carrier")
    groups = np.concatenate([np.repeat(np.arange(N_CODED), REPEAT),
                             np.full(N_PILOT, N_CODED)])
    rng.shuffle(groups)
    sign = rng.choice([-1.0, 1.0], size=N_NODES)
    return Carrier(groups.reshape(GRID_H, GRID_W), sign.reshape(GRID_H, GRID_W))


def group_symbols(payload: Payload) -> np.ndarray:
    """+-1 symbol per group: the coded payload bits (bit 0 -> +1) then the +1 pilot."""
    coded = conv_encode(payload.bits())
    return np.concatenate([1.0 - 2.0 * coded, [1.0]])


def node_pattern(payload: Payload, key: bytes) -> np.ndarray:
    """(GRID_H, GRID_W) node values in {-1, +1}."""
    c = carrier(key)
    return group_symbols(payload)[c.group] * c.sign


def pattern_frames(nodes: np.ndarray, amplitude: float = AMPLITUDE) -> np.ndarray:
    """One period of the breathing pattern as 8-bit luma around 128: (PERIOD_FRAMES, H, W).

    Rounded to 8 bits at node level: the rounding error is a small fixed part of the
    pattern, not noise the detector sees differently from frame to frame.
    """
    t = np.arange(PERIOD_FRAMES) / PERIOD_FRAMES
    wave = np.sin(2 * np.pi * t)[:, None, None]
    values = 128.0 + amplitude * wave * nodes[None]
    return np.clip(np.round(values), 0, 255).astype(np.uint8)


def write_y4m(path: Path, luma: np.ndarray, fps: int | Fraction = PATTERN_FPS) -> Path:
    """Write (frames, H, W) luma as a 4:2:0 Y4M clip with neutral chroma (lossless, tiny).

    ``fps`` may be a Fraction (e.g. 30000/1001): Y4M stores the rate as a ratio, so a clip
    written at the video's exact rate keeps frame k on the video's frame k.
    """
    n, h, w = luma.shape
    if h % 2 or w % 2:
        raise ValueError("4:2:0 needs an even frame size")
    rate = Fraction(fps)
    chroma = np.full((h // 2) * (w // 2) * 2, 128, dtype=np.uint8).tobytes()
    header = f"YUV4MPEG2 W{w} H{h} F{rate.numerator}:{rate.denominator} Ip A1:1 C420mpeg2\n".encode()
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(header)
        for frame in luma:
            fh.write(b"FRAME\n" + np.ascontiguousarray(frame).tobytes() + chroma)
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class ForensicGraph:
    """What a render adds to its ffmpeg run to carry the forensic mark."""

    input_args: list[str]  # extra input (put after the existing inputs)
    fragment: str  # filtergraph from [in_label] (yuv420p) to [out_label]
    pattern: Path


def forensic_graph(payload: Payload, *, width: int, height: int, key: bytes, work_dir: Path, input_index: int,
                   in_label: str, out_label: str) -> ForensicGraph:
    """Write the pattern clip into ``work_dir`` and return the input args and graph fragment.

    ``input_index`` is the ffmpeg input number the returned ``input_args`` will get; the
    fragment expects ``[in_label]`` in yuv420p at ``width`` x ``height`` (after subtitles and
    the visible mark, right before the encoder). The pattern input loops forever; the output
    still ends with the main input (blend follows its first input).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    pattern = write_y4m(work_dir / PATTERN_NAME, pattern_frames(node_pattern(payload, key)))
    args = ["-stream_loop", "-1", "-i", str(pattern)]
    fragment = (f"[{input_index}:v]scale={width}:{height}:flags=bilinear[wmpat];"
                f"[{in_label}][wmpat]blend=all_mode=grainmerge[{out_label}]")
    return ForensicGraph(args, fragment, pattern)
