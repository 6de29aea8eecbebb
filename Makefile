# One virtualenv for everything; `make test` is what CI runs.
VENV ?= .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

.PHONY: install test unit up bench
install: $(VENV)/.installed

test: $(VENV)/.installed
	scripts/install-test-tools
	$(PY) -m pytest -q -p no:cacheprovider

unit: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

up: $(VENV)/.installed
	$(VENV)/bin/pocket up
