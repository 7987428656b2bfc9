"""The user (or house) config file: settings that must be the same for every command on a machine.

Why a file besides the environment: a studio sets the forensic ledger once (on a share that
every render node and the anti-piracy team mount) and ``run``, ``watch``, the farm and
``trace`` must all find it, months later, from any shell. Environment variables get lost
between a cron job, a systemd unit and a laptop; one small file does not.

Where: ``$LOCPIPE_USER_CONFIG``, else ``$XDG_CONFIG_HOME/locpipe/config.yaml``
(``~/.config/locpipe/config.yaml``). Missing is fine (every key has a default); a typo fails
with the file, the key and the reason, like every other config. Example::

    ledger: /mnt/forensics/forensic-ledger.sqlite   # relative paths: from this file's folder
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from locpipe.errors import ConfigError

USER_CONFIG_ENV = "LOCPIPE_USER_CONFIG"


class UserConfig(BaseModel):
    """What the user config file may set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the house forensic ledger (its key file sits beside it)
    ledger: Path | None = None


def user_config_path() -> Path:
    """``$LOCPIPE_USER_CONFIG``, else ``$XDG_CONFIG_HOME/locpipe/config.yaml``."""
    if os.environ.get(USER_CONFIG_ENV):
        return Path(os.environ[USER_CONFIG_ENV]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "locpipe" / "config.yaml"


def load_user_config(path: Path | None = None) -> UserConfig:
    """The user config (defaults when the file does not exist); relative paths are made
    absolute against the file's folder, so the file means the same from any working directory."""
    path = path or user_config_path()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return UserConfig()
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(path, "", f"cannot read the user config: {exc}") from None
    if raw is None:
        return UserConfig()
    if not isinstance(raw, dict):
        raise ConfigError(path, "", "must be a mapping of settings (e.g. `ledger: /path/forensic-ledger.sqlite`)")
    try:
        cfg = UserConfig.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ConfigError(path, ".".join(str(p) for p in err["loc"]), err["msg"]) from None
    if cfg.ledger is not None:
        ledger = cfg.ledger.expanduser()
        cfg = cfg.model_copy(update={"ledger": ledger if ledger.is_absolute() else (path.parent / ledger)})
    return cfg
