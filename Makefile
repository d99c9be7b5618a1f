# kmconsole — two commands: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test lint check install clean tools

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Reinstall only when pyproject.toml changes.
$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the tests use, installed when missing: Chromium for the browser tests
# (Playwright's own download fails offline) and docker-compose, which validates
# docker-compose.yml without a Docker daemon.
TOOLS := chromium:chromium docker-compose:docker-compose

tools:
	@missing=""; for pair in $(TOOLS); do \
	  command -v "$${pair%%:*}" >/dev/null 2>&1 || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install$$missing; the tests that need them will be skipped"; \
	  else echo "note:$$missing not installed; the tests that need them will be skipped"; fi; fi

# The embedded default is a development setup: DEBUG=1 unless the caller says otherwise.
run: install
	DEBUG=$${DEBUG:-1} $(PY) manage.py run_console

test: install tools
	$(PY) -m pytest $(PYTEST_ARGS)

# ruff (lint and format) and the architecture contracts in pyproject.toml [tool.importlinter].
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-logo

clean:
	rm -rf $(VENV) var staticfiles
