"""Shared fixtures: real media made with the packaged ffmpeg, and the bundled sample."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from locpipe.media.ffmpeg import ffmpeg_exe

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "ep001.mp4"
SAMPLE_SCRIPT = ROOT / "samples" / "reference" / "ep001.script.json"


def ffmpeg(*args: str) -> None:
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def make_clip(path: Path, *, seconds: float = 3.0, size: str = "360x640", audio: bool = True,
              rate: int = 30) -> Path:
    """A small real H.264/AAC file: moving test pattern and a tone."""
    args = ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]
    if audio:
        args += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={seconds}"]
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-shortest"] if audio else []
    ffmpeg(*args, str(path))
    return path


def cut_sample(path: Path, start: float, seconds: float) -> Path:
    """A shorter real episode cut from the bundled sample (re-encoded for an exact cut)."""
    ffmpeg("-ss", str(start), "-i", str(SAMPLE), "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast",
           "-c:a", "aac", str(path))
    return path


@pytest.fixture(scope="session", autouse=True)
def _house_ledger_of_the_test_session(tmp_path_factory):
    """The house forensic ledger (default of run/watch/farm/trace: $XDG_DATA_HOME/locpipe/) and the
    user config file point into the session's temp folder: tests never touch the real ones."""
    import os

    root = tmp_path_factory.mktemp("house")
    saved = {k: os.environ.get(k) for k in ("XDG_DATA_HOME", "LOCPIPE_USER_CONFIG")}
    os.environ.update({"XDG_DATA_HOME": str(root / "data"), "LOCPIPE_USER_CONFIG": str(root / "config.yaml")})
    yield root
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def sample() -> Path:
    if not SAMPLE.exists():
        pytest.fail(f"bundled sample missing: {SAMPLE}")
    return SAMPLE
