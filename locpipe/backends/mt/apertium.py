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

#: target -> apertium modes applied after the English pivot
CHAINS = {"es": ["en-es"], "pt": ["en-es", "es-pt"]}
PACKAGES = {"en-es": "apertium-eng-spa", "es-pt": "apertium-es-pt"}


def _modes() -> set[str]:
    exe = shutil.which("apertium")
    if not exe:
        return set()
    out = subprocess.run([exe, "-l"], capture_output=True, text=True, check=False).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


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
        missing = [m for chain in CHAINS.values() for m in chain if m not in _modes()]
        if missing:
            raise BackendUnavailable("apertium modes missing: " + ", ".join(
                f"{m} (apt-get install {PACKAGES[m]})" for m in sorted(set(missing))))

    def translate(self, request: TranslationRequest) -> list[str]:
        english = WhisperTranslate().translate(request)
        texts = english
        for mode in CHAINS[request.target_base]:
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
