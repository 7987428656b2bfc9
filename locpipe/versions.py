"""Installed package versions, for cache keys and the manifest.

One place, because every backend puts its library's version into its stage keys: a changed
library must invalidate what it produced, and a missing one must read "missing", not crash.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version


def dist_version(name: str, missing: str = "missing") -> str:
    """Version of the installed distribution ``name``, else ``missing``."""
    try:
        return version(name)
    except PackageNotFoundError:
        return missing
