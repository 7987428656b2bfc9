"""The one place ffmpeg is run: argument lists, never shell strings.

The ffmpeg binary is the static build shipped in the ``imageio-ffmpeg`` wheel (libass,
fontconfig, rubberband, x264), so a pip install is all a machine needs. ``LOCPIPE_FFMPEG``
overrides it (e.g. a distro or GPU build on a render node).
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from locpipe.children import run_child
from locpipe.errors import MediaError

log = logging.getLogger(__name__)


@cache
def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary (cached: resolving it is a filesystem lookup)."""
    override = os.environ.get("LOCPIPE_FFMPEG")
    if override:
        return override
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def media_input(path: str | os.PathLike) -> str:
    """A local file as ffmpeg and PyAV must be given it: absolute.

    Both read a relative name with a colon before any slash (``ep:1.mp4``) as a URL
    (``Protocol not found``) and one starting with ``-`` as an option; an absolute path is
    neither. Symlinks are kept (``abspath``, not ``resolve``): the name is the user's.
    """
    return os.path.abspath(os.fspath(path))


def _safe_inputs(args: list[str]) -> list[str]:
    """``args`` with every ``-i`` that names an existing relative file made absolute
    (lavfi sources, ``pipe:`` and URLs are left alone: they do not exist as files)."""
    out = list(args)
    for n in range(1, len(out)):
        if out[n - 1] == "-i" and not os.path.isabs(out[n]) and os.path.exists(out[n]):
            out[n] = media_input(out[n])
    return out


def ffmpeg_version() -> str:
    out = run_child([ffmpeg_exe(), "-version"], capture_output=True, text=True, check=False).stdout
    return out.split("\n", 1)[0].replace("ffmpeg version ", "").split(" ")[0]


def run_ffmpeg(args: list[str], *, env: dict[str, str] | None = None, what: str = "ffmpeg") -> str:
    """Run ffmpeg with ``args`` (no binary name), return stderr; raise MediaError on failure.

    stderr is returned because filters such as loudnorm and ebur128 report there.
    """
    cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", *_safe_inputs(args)]
    log.debug("running %s", " ".join(cmd))
    full_env = {**os.environ, **(env or {})}
    proc = run_child(cmd, capture_output=True, text=True, env=full_env, check=False)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise MediaError(f"{what} failed (exit {proc.returncode}): {tail}")
    return proc.stderr


# --------------------------------------------------------------------------- filter escaping


def escape_filter_value(value: str) -> str:
    """Escape a value for use inside a filtergraph option (``key=value``).

    Two levels apply: the option value (``\\``, ``'`` and ``:``) and the graph
    (``[],;``). Quoting with single quotes handles the graph level; inside quotes a
    literal ``'`` must close, escape and reopen.
    """
    v = value.replace("\\", "\\\\").replace(":", "\\:").replace("'", "'\\\\\\''")
    return f"'{v}'"


# --------------------------------------------------------------------------- loudness


@dataclass(frozen=True)
class Loudness:
    integrated: float
    true_peak: float
    lra: float
    threshold: float


def measure_loudness(path: Path, *, stream: str = "a:0") -> Loudness:
    """Integrated loudness (LUFS), true peak (dBTP) and LRA with ffmpeg's loudnorm analyser."""
    err = run_ffmpeg(
        ["-i", str(path), "-map", f"0:{stream}", "-af", "loudnorm=print_format=json", "-f", "null", "-"],
        what=f"loudness measurement of {path.name}",
    )
    return _parse_loudnorm_json(err)


def _parse_loudnorm_json(stderr: str) -> Loudness:
    match = re.search(r"\{[^{}]*\"input_i\"[^{}]*\}", stderr, re.S)
    if not match:
        raise MediaError("loudnorm printed no measurement")
    data = json.loads(match.group(0))

    def num(key: str) -> float:
        v = data[key]
        return -99.0 if v in ("-inf", "inf") else float(v)

    return Loudness(num("input_i"), num("input_tp"), num("input_lra"), num("input_thresh"))


def loudness_series(path: Path, *, step: float = 0.5) -> list[float]:
    """Momentary loudness (LUFS, 400 ms window) every ``step`` seconds, from ffmpeg's ebur128."""
    err = run_ffmpeg(["-i", str(path), "-map", "0:a:0", "-af", "ebur128", "-f", "null", "-"],
                     what=f"loudness series of {path.name}")
    values: list[float] = []
    next_t = step
    for match in re.finditer(r"t:\s*([\d.]+)\s+TARGET:[^M]*M:\s*(-?[\d.]+|-inf)", err):
        t, m = float(match.group(1)), match.group(2)
        if t + 1e-6 >= next_t:
            values.append(max(-70.0, float(m)) if m != "-inf" else -70.0)
            next_t += step
    return values
