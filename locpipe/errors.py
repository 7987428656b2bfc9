"""Specific exceptions: each says what went wrong and where (file, key, stage)."""

from __future__ import annotations

from pathlib import Path


class LocpipeError(Exception):
    """Base class for errors that are reported to the user without a traceback."""


class ConfigError(LocpipeError):
    """A configuration file is missing, malformed or invalid.

    Raised before any work starts, naming the file, the key and the reason.
    """

    def __init__(self, path: Path | str, key: str, reason: str):
        self.path, self.key, self.reason = Path(path), key, reason
        where = f"{path}: {key}" if key else str(path)
        super().__init__(f"{where}: {reason}")


class InputError(LocpipeError):
    """An input episode cannot be used (corrupt, empty, no audio, not a video)."""

    def __init__(self, path: Path | str, reason: str):
        self.path, self.reason = Path(path), reason
        super().__init__(f"{path}: {reason}")


class BackendUnavailable(LocpipeError):
    """A backend cannot run here: its package, model weights or network are missing.

    The message names the backend and what to install or configure.
    """


class StageError(LocpipeError):
    """A stage failed for one unit; carries the stage name for the manifest.

    The one exception type the orchestrator sees: ``EpisodeContext.stage`` wraps whatever a
    stage raises into it (the original stays as ``__cause__``).
    """

    def __init__(self, stage: str, message: str):
        self.stage, self.message = stage, message
        super().__init__(f"[{stage}] {message}")


class MediaError(LocpipeError):
    """ffmpeg failed; the message carries the tail of its log."""
