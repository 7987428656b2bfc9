"""Every configuration file a run will read, validated before any episode starts.

Why: markets and render profiles were checked up front, but a series bible or a voices file
was read only when its first episode needed it, after ingest, OCR and ASR had run, so a
typo (or an unsafe YAML tag) cost minutes of work before it was reported. Here every file
the episodes of a run will use is loaded once: a problem is a ``ConfigError`` naming the
file, the key and the reason, and nothing has been processed (exit 2).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from locpipe.config import load_sensitivity
from locpipe.core.settings import RunSettings

log = logging.getLogger(__name__)


def series_files(episodes: Sequence[Path], settings: RunSettings) -> tuple[list[Path], list[Path]]:
    """(bibles, voices files) the episodes of a run will read, each once, in order of first use."""
    from locpipe.localize.bible import find_bible
    from locpipe.localize.voices import VOICES_FILE, series_state_dir

    bibles: dict[Path, None] = {}
    voices: dict[Path, None] = {}
    for folder in dict.fromkeys(p.resolve().parent for p in episodes):
        bible = settings.bible_path or find_bible(folder, settings.config_dir)
        if bible is not None:
            bibles[bible] = None
        fallback = settings.work_dir / "series" / (folder.name.lstrip(".") or "series")
        for state in (series_state_dir(folder), fallback):
            if (state / VOICES_FILE).is_file():
                voices[state / VOICES_FILE] = None
    return list(bibles), list(voices)


def check_configs(episodes: Sequence[Path], settings: RunSettings) -> None:
    """Load every bible, voices file and sensitivity list the run will use; raise ConfigError."""
    from locpipe.localize.bible import load_bible
    from locpipe.localize.voices import load_voice_map

    bibles, voices = series_files(episodes, settings)
    for path in bibles:
        load_bible(path)
    for path in voices:
        load_voice_map(path)
    for language in dict.fromkeys(m.config.language for m in settings.markets):
        load_sensitivity(language, settings.config_dir)
    log.debug("configuration checked: %d bible(s), %d voices file(s)", len(bibles), len(voices))
