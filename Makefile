# Anyon Cloud. `make run` and `make test` are the two set-up commands (README.md).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test test-future lint image base-image doctor bench screenshots clean-venv install

$(VENV)/.installed: pyproject.toml constraints.txt
	@# A venv left half-made by a failed first run (no python3-venv: no pip inside) is rebuilt, not trusted.
	@if [ -d $(VENV) ] && ! $(PY) -m pip --version >/dev/null 2>&1; then \
	  echo "$(VENV) is incomplete (an earlier install failed): rebuilding it"; rm -rf $(VENV); fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); \
	  echo "Cannot create a virtualenv: install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)"; exit 1; }
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e .
	@touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) install --quiet -c constraints.txt -e ".[test]"
	@touch $@

# Trial runs on one machine: DEBUG on (generated dev key, plain-HTTP cookies) unless the caller set it. `make doctor`
# gets the same, so that beside `make run` it looks at the same setup (the same key reads the worker's heartbeat).
run doctor: export DEBUG ?= true
# The runtime image, built when it is missing or was built from other sources (about 5 minutes the first time, with
# progress); without a Docker engine it is skipped and the pages say what is missing.
ENSURE_IMAGE ?= runtime-image/build.sh --if-missing
run: $(VENV)/.installed
	@$(ENSURE_IMAGE) || echo "The runtime image could not be built (see above): attempts fail until it is; fix it" \
	  "and run make image. The server starts now."
	$(PY) manage.py migrate --noinput
	@# The development-key banner was shown by migrate: once is enough.
	ANYON_QUIET_DEV_KEY=1 $(PY) manage.py createcachetable
	ANYON_QUIET_DEV_KEY=1 $(PY) manage.py ensure_admin
	ANYON_QUIET_DEV_KEY=1 $(PY) manage.py serve

test: $(VENV)/.installed-test
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# The suite's parts that need no Docker, browser or service, with every Python process's wall clock moved
# FUTURE_DAYS ahead (tests/clock_shift/sitecustomize.py): a test that compares a fixed date with the clock fails now,
# not on the day that date passes.
FUTURE_DAYS ?= 400
FUTURE_TESTS ?= -m "not docker and not browser" --ignore=tests/scaleout --ignore=tests/bench --ignore=tests/test_leak_sweep.py
test-future: $(VENV)/.installed-test
	ANYON_TEST_CLOCK_SHIFT_DAYS=$(FUTURE_DAYS) PYTHONPATH="$(CURDIR)/tests/clock_shift$${PYTHONPATH:+:$$PYTHONPATH}" \
	  $(VENV)/bin/pytest -p no:randomly $(FUTURE_TESTS) $(PYTEST_ARGS)

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

doctor: $(VENV)/.installed
	ANYON_QUIET_DEV_KEY=1 $(PY) manage.py doctor

bench: $(VENV)/.installed-test
	$(PY) -m tests.bench.run

screenshots: $(VENV)/.installed-test
	$(PY) -m tests.screenshots

base-image:
	runtime-image/bootstrap-base.sh

# `make image CLAUDE_CODE_VERSION=x.y.z` builds another Claude Code release (tag <IMAGE_VERSION>-claude-x.y.z).
image:
	runtime-image/build.sh $(if $(CLAUDE_CODE_VERSION),--claude-code $(CLAUDE_CODE_VERSION))

# Production: PostgreSQL, Redis, service user, settings, systemd units, nginx, runtime image (docs/DEPLOYMENT.md).
# As root; re-run to upgrade. `make install INSTALL_ARGS="--server-name anyon.example.com"`.
install:
	deploy/install.sh $(INSTALL_ARGS)

clean-venv:
	rm -rf $(VENV)
