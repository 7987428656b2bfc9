"""Online providers through deep-translator (Google, DeepL, Microsoft, LibreTranslate, MyMemory).

Keys come from the environment (``DEEPL_API_KEY``, ``MICROSOFT_TRANSLATOR_KEY``,
``LIBRETRANSLATE_API_KEY``, ``MYMEMORY_EMAIL``); the
endpoint can be overridden (``LOCPIPE_<PROVIDER>_URL``) for a proxy or a test server.
Reachability is checked with a short connect before any request, because deep-translator's
requests carry no timeout and would hang a batch on a dead network.
"""

from __future__ import annotations

import os
from importlib.metadata import version as pkg_version

from locpipe.backends.mt.base import TranslationBackend, TranslationRequest, check_reachable, is_local_url, register
from locpipe.errors import BackendUnavailable

#: deep-translator's Google codes for our source/target languages
GOOGLE_CODES = {"zh": "zh-CN", "en": "en", "pt": "pt", "es": "es", "id": "id", "th": "th", "ar": "ar",
                "ja": "ja", "ko": "ko", "fr": "fr", "de": "de", "vi": "vi", "hi": "hi"}
DEEPL_TARGETS = {"en", "pt", "es", "id", "ar", "ja", "ko", "fr", "de"}


class _DeepTranslatorBackend(TranslationBackend):
    """Shared shell: build a deep-translator object, check reachability, translate per line."""

    provider = ""
    default_url = ""
    languages: set[str] = set()
    #: a web service: even behind a local ``LOCPIPE_<PROVIDER>_URL`` proxy the text leaves the machine
    remote = True

    @property
    def version(self) -> str:
        return f"deep-translator {pkg_version('deep-translator')} {self.provider}"

    @property
    def url(self) -> str:
        return os.environ.get(f"LOCPIPE_{self.provider.upper()}_URL", self.default_url)

    def supports(self, source: str, target: str) -> bool:
        return source in GOOGLE_CODES and target in self.languages

    def check_available(self) -> None:
        check_reachable(self.url)

    def _translator(self, request: TranslationRequest):
        raise NotImplementedError

    def translate(self, request: TranslationRequest) -> list[str]:
        translator = self._translator(request)
        texts = [c.text for c in request.cues]
        out: list[str] = []
        for text in texts:
            if not text.strip():
                out.append("")
                continue
            try:
                result = translator.translate(text)
            except Exception as exc:  # deep-translator raises many unrelated types
                raise BackendUnavailable(f"{self.name} failed on {text!r}: {exc}") from None
            out.append((result or "").strip())
        return out


@register("google")
class GoogleBackend(_DeepTranslatorBackend):
    provider = "google"
    default_url = "https://translate.google.com/m"
    languages = set(GOOGLE_CODES)

    def _translator(self, request: TranslationRequest):
        from deep_translator import GoogleTranslator

        t = GoogleTranslator(source=GOOGLE_CODES[request.source_lang], target=GOOGLE_CODES[request.target_base])
        t._base_url = self.url  # endpoint override (proxy / test server)
        return t


@register("deepl")
class DeepLBackend(_DeepTranslatorBackend):
    provider = "deepl"
    languages = DEEPL_TARGETS

    @property
    def default_url(self) -> str:  # type: ignore[override]
        key = os.environ.get("DEEPL_API_KEY", "")
        return "https://api-free.deepl.com/v2/" if key.endswith(":fx") else "https://api.deepl.com/v2/"

    def check_available(self) -> None:
        if not os.environ.get("DEEPL_API_KEY"):
            raise BackendUnavailable("DEEPL_API_KEY is not set")
        super().check_available()

    def _translator(self, request: TranslationRequest):
        from deep_translator import DeeplTranslator

        key = os.environ["DEEPL_API_KEY"]
        t = DeeplTranslator(api_key=key, source=request.source_lang, target=request.target_base,
                            use_free_api=key.endswith(":fx"))
        t._base_url = self.url
        return t


@register("microsoft")
class MicrosoftBackend(_DeepTranslatorBackend):
    provider = "microsoft"
    default_url = "https://api.cognitive.microsofttranslator.com/translate"
    languages = set(GOOGLE_CODES)

    def check_available(self) -> None:
        if not os.environ.get("MICROSOFT_TRANSLATOR_KEY"):
            raise BackendUnavailable("MICROSOFT_TRANSLATOR_KEY is not set")
        super().check_available()

    def _translator(self, request: TranslationRequest):
        from deep_translator import MicrosoftTranslator

        t = MicrosoftTranslator(api_key=os.environ["MICROSOFT_TRANSLATOR_KEY"],
                                region=os.environ.get("MICROSOFT_TRANSLATOR_REGION"),
                                source=GOOGLE_CODES[request.source_lang], target=GOOGLE_CODES[request.target_base])
        t._base_url = self.url
        return t


#: LibreTranslate's codes (it has no Thai); self-hosted servers often serve fewer
LIBRE_CODES = {"zh", "en", "pt", "es", "id", "ar", "ja", "ko", "fr", "de", "vi", "hi"}
#: MyMemory wants a region; the market's own locale is used when MyMemory knows it
MYMEMORY_DEFAULT_REGION = {"zh": "zh-CN", "en": "en-US", "pt": "pt-BR", "es": "es-419", "id": "id-ID",
                           "th": "th-TH", "ar": "ar-SA", "ja": "ja-JP", "ko": "ko-KR", "fr": "fr-FR",
                           "de": "de-DE", "vi": "vi-VN", "hi": "hi-IN"}


@register("libretranslate")
class LibreTranslateBackend(_DeepTranslatorBackend):
    """LibreTranslate, usually self-hosted (``LOCPIPE_LIBRETRANSLATE_URL``), key optional.

    Self-hosting is how a localization house keeps scripts off third-party servers; such
    servers usually need no key, but deep-translator insists on one, so a placeholder is sent
    (LibreTranslate ignores it when keys are off).
    """

    provider = "libretranslate"
    default_url = "https://libretranslate.com/"
    languages = LIBRE_CODES

    @property
    def remote(self) -> bool:  # type: ignore[override]
        """A server on this machine keeps the text here."""
        return not is_local_url(self.url)

    def supports(self, source: str, target: str) -> bool:
        return source in LIBRE_CODES and target in LIBRE_CODES

    def _translator(self, request: TranslationRequest):
        from deep_translator import LibreTranslator

        url = self.url if self.url.endswith("/") else self.url + "/"
        return LibreTranslator(api_key=os.environ.get("LIBRETRANSLATE_API_KEY") or "none",
                               source=request.source_lang, target=request.target_base, custom_url=url)


@register("mymemory")
class MyMemoryBackend(_DeepTranslatorBackend):
    """MyMemory's free API (rate-limited; ``MYMEMORY_EMAIL`` raises the daily quota)."""

    provider = "mymemory"
    default_url = "https://api.mymemory.translated.net/get"
    languages = set(MYMEMORY_DEFAULT_REGION)

    def _translator(self, request: TranslationRequest):
        from deep_translator import MyMemoryTranslator
        from deep_translator.constants import MY_MEMORY_LANGUAGES_TO_CODES

        known = set(MY_MEMORY_LANGUAGES_TO_CODES.values())
        target = request.target_lang if request.target_lang in known else MYMEMORY_DEFAULT_REGION[request.target_base]
        t = MyMemoryTranslator(source=MYMEMORY_DEFAULT_REGION[request.source_lang], target=target,
                               email=os.environ.get("MYMEMORY_EMAIL"))
        t._base_url = self.url
        return t
