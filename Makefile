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

# Test files run in parallel (pytest-xdist), each file on one worker so a module's shared
# cluster starts once; the tests mostly wait on processes, so more workers than cores pay.
TEST_WORKERS ?= 4

test: $(VENV)/.installed
	scripts/install-test-tools
	$(PY) -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --durations=20

unit: $(VENV)/.installed
	$(PY) -m pytest -q -p no:cacheprovider tests/unit

up: $(VENV)/.installed
	$(VENV)/bin/pocket up
