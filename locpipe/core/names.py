"""Names that land on disk: episode names, work folders, distributor folders, export ids.

An export keeps its episode's own name (``ep 02 'landscape'.mp4`` is delivered as
``ep 02 'landscape'.mp4``): delivery specs and the people matching files expect it. Only what
the target filesystem cannot hold is replaced: ``/``, NUL and control characters, and for
Windows shares ``<>:"\\|?*`` and trailing dots or spaces too. A name too long to carry the
sidecar suffixes (``.es-419.srt``) and the atomic writer's temporary prefix within 255 bytes
is cut and given a hash of the full name, so two long names still differ. Work folders
(the stage cache) never depend on the name's length at all (:func:`work_folder_name`).
"""

from __future__ import annotations

import hashlib
import unicodedata
from pathlib import Path

from locpipe.config import Market, config_hash

#: characters Windows (SMB shares, NTFS) refuses in a file name
WINDOWS_RESERVED = frozenset('<>:"\\|?*')
#: an export stem's budget in UTF-8 bytes: 255 minus ".<pid>.tmp" of the atomic writer, the
#: leading dot and the longest sidecar suffix (".es-419.srt", ".qc.json") with a margin
MAX_EXPORT_STEM_BYTES = 200
#: bytes of the episode name kept in its work folder name (the content hash makes it unique)
WORK_NAME_BYTES = 48


def safe_name(text: str, fallback: str) -> str:
    """``text`` with every character but letters, digits and ``-_.`` made ``_``: valid on every filesystem."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return safe.strip("._") or fallback


def cut_utf8(text: str, max_bytes: int) -> str:
    """The longest prefix of ``text`` whose UTF-8 form fits ``max_bytes`` (never half a character)."""
    return text.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")


def file_stem(text: str, *, windows: bool = False, max_bytes: int = MAX_EXPORT_STEM_BYTES,
              fallback: str = "episode") -> str:
    """``text`` as a file name stem, changed only where the filesystem requires it.

    ``/``, NUL and control characters become ``_`` (and on ``windows`` the reserved
    characters, with trailing dots and spaces removed); a stem over ``max_bytes`` is cut and
    ends in ``~`` and 8 hex digits of the full name's hash.
    """
    out = "".join("_" if ch in "/\0" or unicodedata.category(ch) == "Cc" or (windows and ch in WINDOWS_RESERVED)
                  else ch for ch in text)
    if windows:
        out = out.rstrip(" .")
    if out in ("", ".", ".."):
        return fallback
    if len(out.encode("utf-8")) > max_bytes:
        digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()[:8]
        out = cut_utf8(out, max_bytes - 9).rstrip(" ." if windows else "") + "~" + digest
    return out


def episode_name(path: Path, *, windows: bool = False) -> str:
    """Output name of an episode: the file's own stem (see :func:`file_stem`)."""
    return file_stem(path.stem, windows=windows)


def work_folder_name(name: str, sha256: str) -> str:
    """An episode's folder in the stage cache: a short, safe prefix of its name (for people
    browsing the cache) and its content hash (what makes it unique). Bounded whatever the name."""
    return f"{safe_name(cut_utf8(name, WORK_NAME_BYTES), 'episode')}-{sha256[:12]}"


def distributor_folder(distributor: str) -> str:
    """A distributor id as a folder name (``OUT/<market>/<distributor>/``)."""
    return safe_name(distributor, "distributor")


def export_id_for(episode_sha: str, market: Market, distributor: str) -> str:
    """Deterministic export id: the same unit always gets the same id (idempotent reruns)."""
    raw = f"{distributor}|{market.code}|{episode_sha}|{config_hash(market.config, market.profile)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:10]
