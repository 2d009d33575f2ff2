# The README's two commands: `make run` (serve on http://localhost:8000) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# `make run` installs only what serving needs (no PyTorch, no test tools); `make test` all extras
SERVE_STAMP := $(VENV)/.installed-serve
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=

.PHONY: install run test lint docs bench clean

$(SERVE_STAMP): pyproject.toml scripts/install.sh
	PY=$(PY) VENV=$(VENV) EXTRAS=service,postgres bash scripts/install.sh
	touch $@

$(STAMP): pyproject.toml scripts/install.sh
	PY=$(PY) VENV=$(VENV) EXTRAS=service,postgres,batch,dev,train,clip bash scripts/install.sh
	touch $@ $(SERVE_STAMP)

install: $(STAMP)

run: $(SERVE_STAMP)
	$(BIN)/uvicorn whales_be_service.main:app --host $(HOST) --port $(PORT) \
		--forwarded-allow-ips "$${WHALES_TRUSTED_PROXIES:-}"  # the same proxies as the rate limiter; none by default

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check whales_identify whales_cli whales_be_service integrations scripts tests

docs: $(STAMP)
	$(BIN)/python scripts/gen_cli_docs.py > docs/CLI_REFERENCE.md

bench: $(STAMP)
	$(BIN)/python scripts/benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache
