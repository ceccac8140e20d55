# regdb developer entry points. Everything a fresh machine needs is installed from here:
# Python packages into .venv, and Debian's docker-registry / skopeo / postgresql with apt-get when missing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: help deps system-deps lint test test-loaded demo bench clean

help:
	@echo "make demo   - throwaway local registry with sample images, synced and queried"
	@echo "make lint   - ruff and mypy (configured in pyproject.toml)"
	@echo "make test   - the whole test suite (real registry, real PostgreSQL)"
	@echo "make test-loaded - the same beside two CPU hogs (timing must not matter)"
	@echo "make bench  - performance figures side by side"

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,postgres,lint]'
	touch $@

deps: $(VENV)/.installed system-deps

# The tests run the real registry and PostgreSQL; install them when this machine lacks them (CI runs as root).
system-deps:
	@missing=""; \
	command -v docker-registry >/dev/null || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v sqlite3 >/dev/null || missing="$$missing sqlite3"; \
	command -v htpasswd >/dev/null || missing="$$missing apache2-utils"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# ruff over all the Python in the repository; mypy over the package (the packages setting in pyproject.toml).
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check regdb tests bench scripts migrations
	$(VENV)/bin/mypy

test: deps
	$(PY) -m pytest -q

# The suite beside two busy processes: nothing in it may depend on timing.
test-loaded: deps
	scripts/with-cpu-hog $(PY) -m pytest -q

demo: deps
	$(PY) -m scripts.demo

bench: deps
	$(PY) -m bench.bench

clean:
	rm -rf $(VENV) .demo .bench build dist *.egg-info
