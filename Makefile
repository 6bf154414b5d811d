# Two entry points, each doing all of its own set-up and quick when nothing changed:
#   make lab    JupyterLab with the extension and the local cloud
#   make test   the linters, then every test: pytest, jest, and the browser tests in ui-tests/
# Set-up steps are file targets under .make/ so that they rerun only when their inputs change.
# The Python environment is exactly requirements.lock (made by `make lock`); `make test-newest`
# runs pytest under the newest releases instead, to find a breaking upstream release on purpose.

SHELL := /bin/bash
comma := ,
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
STAMPS ?= .make
LOCK := requirements.lock
# The extras the lock covers (and that the newest-releases check installs).
EXTRAS := test,dev,gcp-billing
# Python environment's own pip, and uv, which installs and makes the lock (both in the lock too).
PIP_VERSION := 26.3
UV_VERSION := $(shell sed -n 's/^uv==\([^ ;]*\).*/\1/p' $(LOCK))
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
# Never let Playwright download a browser: the tests use Debian's chromium.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

LAB_PORT ?= 8888
DEBIAN_PACKAGES := chromium openssh-server openssh-client rsync postgresql
FRONTEND_SOURCES := $(shell find labextension schema -type f 2>/dev/null) package.json tsconfig.json

.PHONY: lab test test-python test-js test-ui lint setup system-deps clean lock test-newest

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
	ruff check jupyter_compute_servers tests benchmarks
	ruff format --check jupyter_compute_servers tests benchmarks
	mypy
	npm run lint:check

setup: $(STAMPS)/frontend $(STAMPS)/ui-npm

# Refresh the lock on purpose: after changing a dependency in pyproject.toml, or to move to
# newer releases once `make test-newest` passes. Pins already in the lock are kept unless
# UPGRADE=1 (all) or UPGRADE_PACKAGE=name (one) asks for newer ones.
lock: $(STAMPS)/venv
	$(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip compile pyproject.toml $(foreach extra,$(subst $(comma), ,$(EXTRAS)),--extra $(extra)) \
	  --universal --python-version 3.10 --quiet -o $(LOCK) \
	  $(if $(filter 1,$(UPGRADE)),--upgrade) $(if $(UPGRADE_PACKAGE),--upgrade-package $(UPGRADE_PACKAGE))
	@echo "$(LOCK) written: run make test, then commit it."

# pytest under the newest releases of every dependency (not the lock), in an environment of its
# own (.venv-newest), so that the locked one is left alone. Not part of `make test`.
test-newest:
	$(MAKE) VENV=.venv-newest STAMPS=.make-newest NEWEST=1 test-python

$(STAMPS)/venv:
	@mkdir -p $(STAMPS)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet "pip==$(PIP_VERSION)"
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund
	@touch $@

# The environment is made exactly the lock (uv pip sync also removes what the lock does not
# list), then the package is installed in editable mode without resolving anything, built by
# the locked build backend. pip check fails when pyproject.toml needs a package the lock lacks.
# The editable install skips its own npm install and build (HATCH_JUPYTER_BUILDER_SKIP_NPM):
# the npm and frontend steps do them, and npm install there would touch package-lock.json
# and make the next run redo everything.
ifeq ($(NEWEST),1)
$(STAMPS)/python: pyproject.toml $(STAMPS)/venv
	HATCH_JUPYTER_BUILDER_SKIP_NPM=1 $(VENV)/bin/python -m pip install --quiet --upgrade \
	  --upgrade-strategy eager -e ".[$(EXTRAS)]"
	$(VENV)/bin/python -m pip list --format=freeze > $(STAMPS)/newest-releases.txt
	@echo "Newest releases installed: $(STAMPS)/newest-releases.txt"
	jupyter server extension enable --sys-prefix jupyter_compute_servers
	@touch $@
else
$(STAMPS)/python: pyproject.toml $(LOCK) $(STAMPS)/venv
	$(VENV)/bin/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(VENV)/bin/uv pip sync --quiet --python $(VENV)/bin/python $(LOCK)
	HATCH_JUPYTER_BUILDER_SKIP_NPM=1 $(VENV)/bin/uv pip install --quiet --python $(VENV)/bin/python \
	  --no-deps --no-build-isolation -e .
	$(VENV)/bin/python -m pip check || { echo "$(LOCK) is out of date with pyproject.toml: run make lock" >&2; exit 1; }
	jupyter server extension enable --sys-prefix jupyter_compute_servers
	@touch $@
endif

$(STAMPS)/frontend: $(FRONTEND_SOURCES) $(STAMPS)/npm $(STAMPS)/python
	npm run build
	jupyter labextension develop --overwrite .
	@touch $@

$(STAMPS)/ui-npm: ui-tests/package.json ui-tests/package-lock.json
	@mkdir -p $(STAMPS)
	cd ui-tests && npm ci --no-audit --no-fund
	@touch $@

# Debian packages the tests need (a real browser, a real sshd, a real PostgreSQL 15 that the
# tests start in a temp dir of their own, a real container engine (podman with runc), and
# mmdebstrap to build its test images from Debian's packages, and a registry to pull from;
# Slurm with munge, slurmdbd and MariaDB for the slurm cloud; Debian's Python with ipykernel
# for the team tests' Unix accounts). Installed when missing and
# running as root, with policy-rc.d telling the packages not to start their own services (the
# tests start theirs); otherwise named, so a developer knows what to install.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	[ -x /usr/sbin/sshd ] || missing="$$missing openssh-server"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	command -v rsync >/dev/null || missing="$$missing rsync"; \
	command -v sshfs >/dev/null || missing="$$missing sshfs"; \
	[ -x /usr/lib/postgresql/15/bin/initdb ] || missing="$$missing postgresql"; \
	command -v podman >/dev/null || missing="$$missing podman"; \
	[ -x /usr/sbin/runc ] || missing="$$missing runc"; \
	command -v mmdebstrap >/dev/null || missing="$$missing mmdebstrap"; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	[ -x /usr/sbin/slurmctld ] || missing="$$missing slurm-wlm"; \
	[ -x /usr/sbin/munged ] || missing="$$missing munge"; \
	[ -x /usr/sbin/slurmdbd ] || missing="$$missing slurmdbd"; \
	[ -x /usr/sbin/mariadbd ] || missing="$$missing mariadb-server"; \
	/usr/bin/python3 -c 'import ipykernel' >/dev/null 2>&1 || missing="$$missing python3-ipykernel"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    made_policy=""; \
	    if [ ! -e /usr/sbin/policy-rc.d ]; then \
	      printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && made_policy=1; \
	    fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; rc=$$?; \
	    [ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d; \
	    [ $$rc = 0 ] || exit $$rc; \
	  else \
	    echo "Missing Debian packages:$$missing (sudo apt-get install$$missing)"; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(STAMPS) .make-newest .venv-newest lib tsconfig.tsbuildinfo jupyter_compute_servers/labextension
