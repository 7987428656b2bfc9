#!/usr/bin/env bash
# Lint (after set-up): ruff over the whole tree, mypy over the typed core and config.
# Configured in pyproject.toml ([tool.ruff], [tool.mypy]); run by .ci/run before the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check --no-cache locpipe tests benchmarks samples scripts
.venv/bin/mypy --no-incremental
