#!/usr/bin/env bash
# The whole test suite: setup, the real services, lint, then pytest (SQLite + PostgreSQL, Redis, Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
./scripts/services.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest "$@"
