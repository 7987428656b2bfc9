"""Loading configs: YAML files validated into the models, errors naming file, key and reason."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from locpipe.config.adaptation import SensitivityList
from locpipe.config.models import Market, MarketConfig, RenderProfile
from locpipe.errors import ConfigError

#: configs shipped with the package source tree (``configs/`` beside ``locpipe/``)
DEFAULT_CONFIG_DIR = Path(__file__).resolve().parent.parent.parent / "configs"


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, "", "file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(path, "", f"not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(path, "", "expected a mapping at the top level")
    return data


def validate(model: type[BaseModel], path: Path, data: dict) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        more = f" (and {len(exc.errors()) - 1} more problem(s))" if len(exc.errors()) > 1 else ""
        raise ConfigError(path, key, err["msg"] + more) from None


def load_profile(config_dir: Path, name: str) -> RenderProfile:
    path = config_dir / "profiles" / f"{name}.yaml"
    data = read_yaml(path)
    data.setdefault("name", name)
    return validate(RenderProfile, path, data)  # type: ignore[return-value]


def load_market(config_dir: Path, code: str) -> Market:
    path = config_dir / "markets" / f"{code}.yaml"
    if not path.exists():
        known = ", ".join(list_market_codes(config_dir)) or "none"
        raise ConfigError(path, "", f"unknown market {code!r} (known: {known})")
    data = read_yaml(path)
    data.setdefault("code", code)
    cfg: MarketConfig = validate(MarketConfig, path, data)  # type: ignore[assignment]
    if cfg.code != code:
        raise ConfigError(path, "code", f"{cfg.code!r} does not match the file name {code!r}")
    try:
        profile = load_profile(config_dir, cfg.render_profile)
    except ConfigError as exc:
        raise ConfigError(path, "render_profile", f"cannot load profile {cfg.render_profile!r}: {exc}") from None
    return Market(config=cfg, profile=profile, source=path)


def list_market_codes(config_dir: Path) -> list[str]:
    return sorted(p.stem for p in (config_dir / "markets").glob("*.yaml"))


def load_markets(config_dir: Path, codes: list[str]) -> list[Market]:
    """Load and validate every requested market up front (fail before any work)."""
    if not codes:
        raise ConfigError(config_dir / "markets", "", "no markets requested")
    return [load_market(config_dir, c.strip()) for c in codes if c.strip()]


def load_sensitivity(language: str, config_dir: Path | None = None) -> SensitivityList:
    """The word list for a language (exact tag, then base); an empty list when none ships."""
    folder = (config_dir or DEFAULT_CONFIG_DIR) / "sensitivity"
    for name in (language, language.split("-")[0].lower()):
        path = folder / f"{name}.yaml"
        if path.is_file():
            data = read_yaml(path)
            data.setdefault("language", name)
            return validate(SensitivityList, path, data)  # type: ignore[return-value]
    return SensitivityList(language=language)
