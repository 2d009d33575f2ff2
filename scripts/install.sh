#!/usr/bin/env bash
# One install path for humans, CI and the Docker image: a venv with the project and its extras.
#   EXTRAS=service,postgres             `make run` and the image: no PyTorch (ONNX Runtime serves the
#                                        verified exports shipped in models/onnx/)
#   EXTRAS=service,postgres,batch,dev,train,clip   `make test` (the default): PyTorch for the library's
#                                        tests, training and exporting
# TORCH_INDEX (optional) points pip at another wheel index for PyTorch, e.g. CPU-only wheels.
set -euo pipefail
PY=${PY:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-service,postgres,batch,dev,train,clip}
"$PY" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ is required"'
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
if [ -n "${TORCH_INDEX:-}" ] && [[ ",$EXTRAS," =~ ,(train|export|clip), ]]; then
  "$VENV/bin/python" -m pip install -q --index-url "$TORCH_INDEX" torch==2.14.1 torchvision==0.29.1
fi
"$VENV/bin/python" -m pip install -q -e ".[${EXTRAS}]"
# The default models' ONNX exports (models/onnx/, shipped): kept when they verify against the
# installed weights; re-exported (checked against PyTorch) when they do not and torch is installed;
# without torch a failed check stops the install and names the fix.
if [ "${EXPORT_ONNX:-1}" = "1" ]; then
  "$VENV/bin/whales" models export-onnx  # the gate's feature model and the default re-identification model
fi
