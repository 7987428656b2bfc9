"""Market and render-profile configuration: the bottom layer (imports no stage).

``models`` holds the validated pydantic models, ``adaptation`` the market adaptation
models, ``loader`` the YAML loading that names file, key and reason on any error.
"""

from locpipe.config.adaptation import AdaptationConfig, CurrencyRule, SensitiveWord, SensitivityList, SensitivityRule
from locpipe.config.loader import (
                                       DEFAULT_CONFIG_DIR,
                                       list_market_codes,
                                       load_market,
                                       load_markets,
                                       load_profile,
                                       load_sensitivity,
                                       read_yaml,
                                       validate,
)
from locpipe.config.models import (
                                       DubConfig,
                                       LoudnessTarget,
                                       Market,
                                       MarketConfig,
                                       PromoConfig,
                                       RenderProfile,
                                       SafeZone,
                                       SubtitleRules,
                                       SubtitleStyle,
                                       TranslationConfig,
                                       WatermarkPolicy,
                                       config_hash,
)

__all__ = ["AdaptationConfig", "CurrencyRule", "SensitiveWord", "SensitivityList", "SensitivityRule",
           "DEFAULT_CONFIG_DIR", "list_market_codes", "load_market", "load_markets", "load_profile",
           "load_sensitivity", "read_yaml", "validate", "DubConfig", "LoudnessTarget", "Market", "MarketConfig",
           "PromoConfig", "RenderProfile", "SafeZone", "SubtitleRules", "SubtitleStyle", "TranslationConfig",
           "WatermarkPolicy", "config_hash"]
