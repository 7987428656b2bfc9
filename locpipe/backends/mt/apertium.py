"""Apertium (Debian packages) as an offline pivot: Whisper speech->English, then rule-based.

``apertium-eng-spa`` gives English->Spanish and ``apertium-es-pt`` Spanish->Portuguese.
The quality is rough but it keeps Spanish and Portuguese markets running with no network.
"""

from __future__ import annotations

import shutil
import subprocess

from locpipe.backends.mt.base import TranslationBackend, TranslationRequest, register
from locpipe.backends.mt.whisper_translate import WhisperTranslate
from locpipe.errors import BackendUnavailable

#: target -> steps after the English pivot; each step lists the mode names packages use for
#: it (Debian 12's apertium-eng-spa installs "eng-spa", older packages "en-es"), best first
CHAINS: dict[str, list[tuple[str, ...]]] = {
    "es": [("eng-spa", "en-es")],
    "pt": [("eng-spa", "en-es"), ("es-pt_BR", "es-pt")],
}
PACKAGES = {"eng-spa": "apertium-eng-spa", "en-es": "apertium-eng-spa",
            "es-pt_BR": "apertium-es-pt", "es-pt": "apertium-es-pt"}


def _modes() -> set[str]:
    exe = shutil.which("apertium")
    if not exe:
        return set()
    out = subprocess.run([exe, "-l"], capture_output=True, text=True, check=False).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


def resolve_chain(target: str, installed: set[str], *, region: str = "") -> list[str] | None:
    """The installed mode for every step towards ``target`` (None if a step is missing).

    European Portuguese markets skip the Brazilian variant mode.
    """
    modes = []
    for step in CHAINS[target]:
        options = [m for m in step if not (region and region.upper() != "BR" and m.endswith("_BR"))]
        found = next((m for m in options if m in installed), None)
        if found is None:
            return None
        modes.append(found)
    return modes


@register("apertium")
class ApertiumPivot(TranslationBackend):
    term_mode = "post_edit"  # translates the audio: no placeholders possible

    @property
    def version(self) -> str:
        return "apertium " + ",".join(sorted(_modes()))

    def supports(self, source: str, target: str) -> bool:
        return target in CHAINS

    def check_available(self) -> None:
        if not shutil.which("apertium"):
            raise BackendUnavailable("apertium is not installed (Debian: apt-get install apertium "
                                     "apertium-eng-spa apertium-es-pt)")
        installed = _modes()
        missing = {PACKAGES[step[0]] for chain in CHAINS.values() for step in chain
                   if not any(m in installed for m in step)}
        if missing:
            raise BackendUnavailable("apertium modes missing: apt-get install " + " ".join(sorted(missing)))

    def translate(self, request: TranslationRequest) -> list[str]:
        english = WhisperTranslate().translate(request)
        texts = english
        region = request.target_lang.split("-")[1] if "-" in request.target_lang else ""
        chain = resolve_chain(request.target_base, _modes(), region=region)
        if chain is None:
            raise BackendUnavailable(f"apertium has no installed chain to {request.target_lang}")
        for mode in chain:
            texts = [self._run(mode, t) for t in texts]
        return texts

    @staticmethod
    def _run(mode: str, text: str) -> str:
        if not text.strip():
            return ""
        proc = subprocess.run(["apertium", "-u", mode], input=text, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BackendUnavailable(f"apertium {mode} failed: {proc.stderr.strip()[:200]}")
        return proc.stdout.strip()
