# Two commands on a fresh machine: `make dev` and `make test` (README.md).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 7071
APT_PACKAGES := apertium apertium-eng-spa apertium-es-pt apertium-fr-es apertium-spa-ita cg3 chromium sox espeak-ng asterisk-core-sounds-en asterisk-core-sounds-en-g722 asterisk-core-sounds-es asterisk-core-sounds-es-g722 asterisk-core-sounds-fr asterisk-core-sounds-fr-wav asterisk-core-sounds-fr-g722 pocketsphinx-testdata
AZURITE_VERSION := 3.37.0

.PHONY: install system-deps dev test lint bench soak clean

install: system-deps $(VENV)/.installed .tools/node_modules/.bin/azurite

system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "babelroom needs these Debian packages:$$missing"; \
	    echo "run as root, or: sudo apt-get update && sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	  echo "installing Debian packages:$$missing"; \
	  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null; \
	fi
	@command -v npm >/dev/null || { echo "npm is required for Azurite (apt-get install -y npm)"; exit 1; }

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	@touch $@

.tools/node_modules/.bin/azurite:
	npm install --prefix .tools --no-audit --no-fund --loglevel=error azurite@$(AZURITE_VERSION)

dev: install
	$(PY) -m babelroom dev --port $(PORT)

lint: install
	$(VENV)/bin/ruff check .

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q -ra

bench: install
	$(PY) -m babelroom bench --json docs/bench.json --png docs/bench.png

# Issue 11's reliability figures at full size (~15 min): socket drops, load, a twin restart.
soak: install
	$(PY) -m babelroom.bench.soak --out docs/reliability.md

clean:
	rm -rf $(VENV) .tools .azurite .run .models
