# Two entry points, each doing all of its own set-up and quick when nothing changed:
#   make lab    JupyterLab with the extension and the local cloud
#   make test   the linters, then every test: pytest, jest, and the browser tests in ui-tests/
# Set-up steps are file targets under .make/ so that they rerun only when their inputs change.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
STAMPS := .make
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Never let Playwright download a browser: the tests use Debian's chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

LAB_PORT ?= 8888
DEBIAN_PACKAGES := chromium openssh-server openssh-client rsync
FRONTEND_SOURCES := $(shell find labextension schema -type f 2>/dev/null) package.json tsconfig.json

.PHONY: lab test test-python test-js test-ui lint setup system-deps clean

lab: $(STAMPS)/frontend
	@echo "Starting JupyterLab with jupyter-compute-servers; open the URL printed below."
	jupyter lab --allow-root --no-browser --ip=127.0.0.1 --port=$(LAB_PORT) $(LAB_ARGS)

test: lint test-python test-js test-ui

test-python: $(STAMPS)/frontend system-deps
	python -m pytest $(PYTEST_ARGS)

# The jest tests start a real jupyter server (from .venv) with the extension.
test-js: $(STAMPS)/npm $(STAMPS)/python system-deps
	npm test

test-ui: $(STAMPS)/frontend $(STAMPS)/ui-npm system-deps
	cd ui-tests && npx playwright test $(PLAYWRIGHT_ARGS)

lint: $(STAMPS)/python $(STAMPS)/npm
	ruff check jupyter_compute_servers tests
	ruff format --check jupyter_compute_servers tests
	mypy
	npm run lint:check

setup: $(STAMPS)/frontend $(STAMPS)/ui-npm

$(STAMPS)/venv:
	@mkdir -p $(STAMPS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund
	@touch $@

# The editable install skips its own npm install and build (HATCH_JUPYTER_BUILDER_SKIP_NPM):
# the npm and frontend steps do them, and npm install there would touch package-lock.json
# and make the next run redo everything.
$(STAMPS)/python: pyproject.toml $(STAMPS)/venv
	HATCH_JUPYTER_BUILDER_SKIP_NPM=1 $(VENV)/bin/python -m pip install --quiet -e ".[test,dev]"
	jupyter server extension enable --sys-prefix jupyter_compute_servers
	@touch $@

$(STAMPS)/frontend: $(FRONTEND_SOURCES) $(STAMPS)/npm $(STAMPS)/python
	npm run build
	jupyter labextension develop --overwrite .
	@touch $@

$(STAMPS)/ui-npm: ui-tests/package.json ui-tests/package-lock.json
	@mkdir -p $(STAMPS)
	cd ui-tests && npm ci --no-audit --no-fund
	@touch $@

# Debian packages the tests need (a real browser, a real sshd). Installed when missing and
# running as root; otherwise named, so a developer knows what to install.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	command -v rsync >/dev/null || missing="$$missing rsync"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "Missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(STAMPS) lib tsconfig.tsbuildinfo jupyter_compute_servers/labextension
