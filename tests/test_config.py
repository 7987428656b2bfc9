from pathlib import Path

import pytest

from locpipe.config import DEFAULT_CONFIG_DIR, list_market_codes, load_market, load_markets
from locpipe.errors import ConfigError

REQUIRED = {"us", "us-social", "br", "mx", "id", "th", "ae", "jp"}


def test_bundled_markets_load_and_cover_the_required_set():
    codes = set(list_market_codes(DEFAULT_CONFIG_DIR))
    assert REQUIRED <= codes
    for code in codes:
        market = load_market(DEFAULT_CONFIG_DIR, code)
        assert market.profile.width == 1080 and market.profile.height == 1920
    us = load_market(DEFAULT_CONFIG_DIR, "us")
    assert us.config.dub.enabled and us.config.language == "en"
    assert not load_market(DEFAULT_CONFIG_DIR, "us-social").config.dub.enabled
    assert load_market(DEFAULT_CONFIG_DIR, "us-social").profile.name == "social"


def _config_tree(tmp_path: Path, market_yaml: str) -> Path:
    (tmp_path / "markets").mkdir()
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "app.yaml").write_text("width: 1080\nheight: 1920\n")
    (tmp_path / "markets" / "xx.yaml").write_text(market_yaml)
    return tmp_path


@pytest.mark.parametrize(
    "yaml_text, key, reason",
    [
        ("name: X\nlanguage: en\nloudness: {integrated: 3}\n", "loudness.integrated", "less than or equal"),
        ("name: X\nlanguage: en\nsubtitles: {primary_colour: white}\n", "subtitles.primary_colour", "#RRGGBB"),
        ("name: X\nlanguage: en\nwatermark: {template: '{who}'}\n", "watermark.template", "unknown placeholder"),
        ("name: X\nlanguage: en\ndubb: {enabled: true}\n", "dubb", "Extra inputs"),
        ("name: X\n", "language", "Field required"),
        ("name: X\nlanguage: en\nrender_profile: nope\n", "render_profile", "file not found"),
        ("name: [unclosed\n", "", "not valid YAML"),
    ],
)
def test_bad_market_config_names_file_key_and_reason(tmp_path, yaml_text, key, reason):
    cfg = _config_tree(tmp_path, yaml_text)
    with pytest.raises(ConfigError) as err:
        load_market(cfg, "xx")
    assert err.value.path.name == "xx.yaml"
    assert err.value.key == key
    assert reason in err.value.reason


def test_unknown_market_lists_known_ones():
    with pytest.raises(ConfigError, match="unknown market 'zz'.*us-social"):
        load_markets(DEFAULT_CONFIG_DIR, ["us", "zz"])
