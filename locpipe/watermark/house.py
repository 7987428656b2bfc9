"""One forensic ledger per house: where it is, what `run` says about it, and moving old ledgers in.

Why: a payload is only traceable with the ledger that issued it and the key beside it.
Before, ``run`` kept both in ``OUT/.locpipe-work`` and ``trace`` looked in the user cache, so
a leak traced months later found nothing. Now every command defaults to the house ledger
(``ledger.ledger_location``) and older per-output ledgers are brought in with
``locpipe ledger migrate OLD_LEDGER``:

* no house ledger yet: the old ledger and its key *become* the house ledger (copied with
  SQLite's backup API, checked, then the old files are renamed ``*.migrated``);
* a house ledger exists: its payloads were made with its own key, and marks already out in
  the world cannot be re-keyed, so the old ledger is kept whole, with its key, in the
  archive folder beside the house ledger (``forensic-ledger.archive/``). ``trace`` reads
  the house ledger first, then each archived one with its own key; the house ledger's
  serials start above the archived ones, so no payload is ever given out twice.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from locpipe.errors import ConfigError, LocpipeError
from locpipe.watermark.keys import KEY_ENV, key_file_for, key_fingerprint, load_key
from locpipe.watermark.ledger import Ledger, ledger_location

log = logging.getLogger(__name__)

MIGRATED_SUFFIX = ".migrated"


def archive_dir(house: Path) -> Path:
    """``forensic-ledger.archive/`` beside the house ledger: older ledgers, each with its key."""
    return house.with_name(house.stem + ".archive")


def known_ledgers(house: Path) -> list[Path]:
    """The house ledger, then every archived ledger (oldest first): what ``trace`` searches."""
    folder = archive_dir(house)
    archived = sorted(folder.glob("*.sqlite"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    return [house, *archived]


def describe_location(explicit: Path | None = None) -> str:
    """One line for ``run``/``watch``/``farm submit`` logs: which ledger, why, and where the key is."""
    path, source = ledger_location(explicit)
    if os.environ.get(KEY_ENV, "").strip():
        key = f"${KEY_ENV}"
    else:
        key_file = key_file_for(path.resolve())
        key = str(key_file) if key_file.is_file() else f"{key_file} (created by the first marked render)"
    return f"forensic ledger: {path.resolve()} ({source}); key: {key}"


@dataclass(frozen=True)
class Migration:
    """What ``migrate`` did: ``moved`` (became the house ledger) or ``archived`` (kept beside it)."""

    action: str
    source: Path
    target: Path
    payloads: int
    key: str  # the key file written, or "$LOCPIPE_WATERMARK_KEY"


def _source_key(source: Path) -> tuple[bytes, Path | None]:
    """The old ledger's key and its key file (None: the key comes from the environment)."""
    key_file = key_file_for(source)
    if key_file.is_file():
        return load_key_file(key_file), key_file
    if os.environ.get(KEY_ENV, "").strip():
        return load_key(source, create=False), None
    raise ConfigError(key_file, "", f"no forensic watermark key beside {source} and ${KEY_ENV} is not set: "
                                    "without its key the ledger's marks cannot be read, so it is not migrated")


def load_key_file(path: Path) -> bytes:
    return path.read_text(encoding="utf-8").strip().encode("utf-8")


def _copy_db(source: Path, target: Path) -> None:
    """A consistent copy even while another process writes the source (SQLite backup API)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    src = sqlite3.connect(source, timeout=60)
    dst = sqlite3.connect(tmp)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    os.replace(tmp, target)


def _copy_key(key_file: Path | None, target: Path) -> str:
    if key_file is None:
        return f"${KEY_ENV}"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_file.read_bytes())
    return str(target)


def _retire(source: Path, key_file: Path | None) -> None:
    """Rename the old files so nothing issues from them again (kept, not deleted: they are evidence)."""
    os.replace(source, source.with_name(source.name + MIGRATED_SUFFIX))
    if key_file is not None:
        os.replace(key_file, key_file.with_name(key_file.name + MIGRATED_SUFFIX))


def migrate(source: Path, house: Path | None = None) -> Migration:
    """Bring the per-output ledger ``source`` (and its key) into the house ledger (module docstring)."""
    source = source.resolve()
    house = (house or ledger_location()[0]).resolve()
    if not source.is_file():
        gone = source.with_name(source.name + MIGRATED_SUFFIX)
        hint = f" (already migrated: {gone})" if gone.exists() else ""
        raise ConfigError(source, "", f"no such ledger{hint}")
    if source == house:
        raise ConfigError(source, "", "this is already the house ledger")
    try:
        count = len(Ledger(source).entries())
    except (sqlite3.Error, LocpipeError) as exc:
        raise ConfigError(source, "", f"not a forensic ledger: {exc}") from None
    key, key_file = _source_key(source)
    house_key = key_file_for(house)
    same_key = house_key.is_file() and load_key_file(house_key) == key
    if not house.exists() and (same_key or not house_key.exists()):
        _copy_db(source, house)
        written = str(house_key) if same_key else _copy_key(key_file, house_key)
        action, target = "moved", house
    else:
        folder = archive_dir(house)
        n = len(list(folder.glob("*.sqlite"))) if folder.is_dir() else 0
        target = folder / f"{key_fingerprint(key)}-{n:03d}.sqlite"
        _copy_db(source, target)
        written = _copy_key(key_file, key_file_for(target))
        if house.exists():
            Ledger(house).raise_floors(Ledger(target).next_serials())
        action = "archived"
    if len(Ledger(target).entries()) < count:  # the copy must hold every payload before the old one goes
        raise LocpipeError(f"{target}: copy of {source} is missing payloads; nothing was retired")
    _retire(source, key_file)
    log.info("forensic ledger %s (%d payloads) %s into %s; key: %s", source, count, action, target, written)
    return Migration(action, source, target, count, written)


def copy_tree_hint(work_dir: Path) -> Path | None:
    """A per-output ledger left in a work folder by an older ``run`` (for the migration hint)."""
    old = work_dir / "forensic-ledger.sqlite"
    return old if old.is_file() else None


__all__ = ["archive_dir", "known_ledgers", "describe_location", "migrate", "Migration", "copy_tree_hint"]
