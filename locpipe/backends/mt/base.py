"""Machine-translation backend interface, registry and selection.

Each backend declares which language pairs it serves and whether it can run here (keys,
binaries, network). A market lists backends in order of preference; the first one that
serves the pair and works is used, and when none does the error names every candidate and
what it needs, so the operator knows exactly what to configure.
"""

from __future__ import annotations

import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from locpipe.artifacts import Cue
from locpipe.backends.registry import Registry
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

#: hosts that are this machine: an endpoint there keeps a ``local-only`` series' text here
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


class TranslationFailed(BackendUnavailable):
    """A backend that looked available failed on this episode (load or request timeout, an
    answer that never validated, a model that would not load): the market's next backend is
    tried, with this message recorded."""


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine (its text never leaves it)."""
    return (urlparse(url).hostname or "") in LOCAL_HOSTS


@dataclass(frozen=True)
class TranslationRequest:
    cues: list[Cue]
    source_lang: str
    #: BCP-47 target, e.g. "pt-BR"
    target_lang: str
    #: the episode's 16 kHz mono audio, for speech-based backends
    audio_16k: Path | None = None
    #: optional context for backends that can use it (the LLM): "bible" (SeriesBible.summary),
    #: "notes" (the market's notes), "scene" (every source line of the episode, for neighbours)
    context: dict | None = None

    @property
    def target_base(self) -> str:
        return self.target_lang.split("-")[0].lower()


class TranslationBackend(ABC):
    name: str = ""
    #: how bible terms are enforced (locpipe.localize.terms): "placeholder" (text in, placeholders
    #: kept), "post_edit" (speech in: the output is corrected afterwards), "context" (the bible
    #: is given to the backend, the output is checked and corrected afterwards)
    term_mode: str = "placeholder"
    #: whether the text (or audio) leaves this machine; a ``data_policy: local-only`` series or
    #: market skips remote backends
    remote: bool = False

    @property
    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def supports(self, source: str, target: str) -> bool:
        """Whether this backend serves the pair (base language codes, e.g. zh -> pt)."""

    @abstractmethod
    def check_available(self) -> None:
        """Raise BackendUnavailable naming what is missing (key, binary, network)."""

    @abstractmethod
    def translate(self, request: TranslationRequest) -> list[str]:
        """One translated text per request cue, same order, same count."""

    def configure_threads(self, threads: int | None) -> None:
        """The worker's share of the CPU (``--jobs``) for backends that run a model here."""
        return None  # only backends that run a model in this process use it

    def route(self, target_lang: str) -> str:
        """How this backend reaches ``target_lang`` ("direct", "via-en", ...), for the manifest."""
        return "direct"

    #: whether :meth:`shorten` can rewrite a line to a length budget (the dub's last resort
    #: before a line overflows its slot)
    can_shorten: bool = False

    def shorten(self, source: str, text: str, target_lang: str, max_chars: int) -> str | None:
        """A rendering of ``source`` no longer than ``max_chars``, or None when it cannot."""
        return None


MT: Registry[TranslationBackend] = Registry("translation", tuple(
    f"locpipe.backends.mt.{m}" for m in ("apertium", "llama_local", "online", "openai_chat",
                                         "whisper_translate")))
register = MT.register


def get_mt_backend(name: str) -> TranslationBackend:
    return MT.create(name)


def choose_backend(preferences: list[str], source: str, target: str,
                   make: Callable[[str], TranslationBackend] = get_mt_backend, *,
                   local_only: bool = False, tried: list[str] | None = None) -> TranslationBackend:
    """First preferred backend that serves (source, target) and can run here.

    ``make`` builds a backend by name (the pipeline passes the worker's ``Resources.mt``).
    ``local_only`` (a ``data_policy: local-only`` series or market) skips remote backends;
    ``tried`` holds reasons from backends that already failed on this episode, so the final
    error names them too.
    """
    reasons: list[str] = list(tried or [])
    base_target = target.split("-")[0].lower()
    for name in preferences:
        backend = make(name)
        if local_only and backend.remote:
            reasons.append(f"{name}: skipped, remote backend and data_policy is local-only")
            continue
        if not backend.supports(source, base_target):
            reasons.append(f"{name}: does not translate {source}->{base_target}")
            continue
        try:
            backend.check_available()
        except BackendUnavailable as exc:
            reasons.append(f"{name}: {exc}")
            continue
        return backend
    raise BackendUnavailable(
        f"no translation backend available for {source}->{target}. Tried: " + "; ".join(reasons)
        + ". Configure one of them (API key in the environment, network, or Debian apertium packages)"
        " or change the market's translation.backends."
    )


def check_reachable(url: str, timeout: float = 3.0) -> None:
    """Fail fast (seconds, not a hung request) when a web API's host cannot be reached."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return
    except OSError as exc:
        raise BackendUnavailable(
            f"cannot reach {parsed.hostname}:{port} ({exc.strerror or exc}); no network?"
        ) from None
