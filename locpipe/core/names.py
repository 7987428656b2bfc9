"""Names that land on disk: episode names, distributor folders, export ids."""

from __future__ import annotations

import hashlib
from pathlib import Path

from locpipe.config import Market, config_hash


def safe_name(text: str, fallback: str) -> str:
    """``text`` with every character but letters, digits and ``-_.`` made ``_``: valid on every filesystem."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)
    return safe.strip("._") or fallback


def episode_name(path: Path) -> str:
    """Output name of an episode: the file stem, made safe for every filesystem."""
    return safe_name(path.stem, "episode")


def distributor_folder(distributor: str) -> str:
    """A distributor id as a folder name (``OUT/<market>/<distributor>/``)."""
    return safe_name(distributor, "distributor")


def export_id_for(episode_sha: str, market: Market, distributor: str) -> str:
    """Deterministic export id: the same unit always gets the same id (idempotent reruns)."""
    raw = f"{distributor}|{market.code}|{episode_sha}|{config_hash(market.config, market.profile)}"
    return hashlib.sha256(raw.encode()).hexdigest()[:10]
