"""The studio's forensic watermark key: where it comes from and how it is named.

The key decides the keyed pattern (forensic.carrier): a trace only finds marks made with
the same key, and a payload read back is only meaningful next to the ledger that issued it.
So the key lives with the ledger: ``$LOCPIPE_WATERMARK_KEY`` when set (a secret manager
injects it), else a random key file beside the ledger (``forensic-ledger.key``), created
on first use with mode 0600. ``locpipe trace --ledger PATH`` then finds both. The key is
never a command-line argument (it would show in ``ps`` and shell history) and never part
of a cache key or a manifest: only its fingerprint is.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from pathlib import Path

from locpipe.errors import ConfigError

log = logging.getLogger(__name__)

KEY_ENV = "LOCPIPE_WATERMARK_KEY"


def key_file_for(ledger: Path) -> Path:
    """The key file that belongs to ``ledger`` (same folder, same stem, ``.key``)."""
    return ledger.with_suffix(".key")


def _read_key_file(path: Path) -> bytes:
    value = path.read_text(encoding="utf-8").strip()
    if len(value) < 16:
        raise ConfigError(path, "", "the forensic watermark key file is empty or too short (< 16 characters)")
    return value.encode("utf-8")


def create_key_file(path: Path) -> bytes:
    """Create ``path`` with a fresh random key unless it exists; return the key in it.

    Written to a private temp file and hard-linked into place: the link fails if another
    process got there first, and then everyone uses that process's key.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)
            log.warning("created a new forensic watermark key %s: back it up with the ledger, "
                        "marks made with it cannot be traced without it", path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_key_file(path)


def load_key(ledger: Path, *, create: bool) -> bytes:
    """The key for marks recorded in ``ledger``: $LOCPIPE_WATERMARK_KEY, else the key file
    beside the ledger (created when ``create``; a render may create it, a trace may not)."""
    value = os.environ.get(KEY_ENV, "").strip()
    if value:
        if len(value) < 16:
            raise ConfigError(f"${KEY_ENV}", "", "the forensic watermark key is too short (< 16 characters)")
        return value.encode("utf-8")
    path = key_file_for(ledger)
    if path.is_file():
        return _read_key_file(path)
    if create:
        return create_key_file(path)
    raise ConfigError(path, "", f"no forensic watermark key: set ${KEY_ENV} or pass --ledger with the ledger "
                                "the marks were issued from (its key file sits beside it)")


def key_fingerprint(key: bytes) -> str:
    """Short public name of a key (for cache keys and reports; reveals nothing usable)."""
    return hashlib.sha256(b"locpipe-forensic-key:" + key).hexdigest()[:12]
