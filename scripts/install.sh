#!/usr/bin/env bash
# One install path for humans, CI and the Docker image: a venv with PyTorch and the project.
# TORCH_INDEX (optional) points pip at another wheel index, e.g. CPU-only wheels in Docker.
set -euo pipefail
PY=${PY:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-service,postgres,dev}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX:-}" ]; then
  "$VENV/bin/python" -m pip install -q --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1
else
  "$VENV/bin/python" -m pip install -q torch==2.14.1 torchvision==0.29.1
fi
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
# The embedded default model exported for ONNX Runtime (models/onnx/, checked against PyTorch):
# the service then runs without torch in its process. Kept when it still verifies. (The Docker
# build sets EXPORT_ONNX=0 here and exports once the code is in place.)
if [ "${EXPORT_ONNX:-1}" = "1" ]; then
  "$VENV/bin/whales" models export-onnx  # the gate's feature model and the default re-identification model
fi
