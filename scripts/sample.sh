#!/usr/bin/env bash
# Set up (idempotent), then localize the bundled sample episode for the US app market
# (English dub + subtitles) and the US social market (subtitles, TikTok profile).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-out/sample}
.venv/bin/locpipe run samples/ --out "$OUT" --markets "${MARKETS:-us,us-social}" --distributor demo
echo "exports written under $(cd "$OUT" && pwd): <market>/<episode>.mp4, .srt, .vtt, .qc.json and manifest.json"
