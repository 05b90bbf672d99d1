#!/usr/bin/env bash
# The whole test suite: system packages, setup, the real services, lint, then pytest (SQLite +
# PostgreSQL, Redis, Chromium). Arguments go to pytest, e.g. `-m "not browser"`.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/system-packages.sh
./scripts/setup.sh
./scripts/services.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
