# Local development. GNU make; run from the repository root.

PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
# Extra arguments, e.g. `make run ARGS="--fresh --rate 5"` or `make test PYTEST_ARGS="-k world"`.
ARGS ?=
PYTEST_ARGS ?=

.PHONY: venv run test

## venv: create .venv if missing and install the project (editable) with its test and local-stack extras
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	$(VENV_PYTHON) -m pip install -e '.[test,local]'
	touch $@

## run: the whole local stack in the foreground (moto SQS, stand-ins, SQLite Delius, simulator, dagster dev)
run: venv
	$(VENV_PYTHON) -m integration.local $(ARGS)

## test: the test suite
test: venv
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

## browser-test: the UI test in headless chromium (needs Debian's chromium: apt-get install -y chromium)
.PHONY: browser-test
browser-test: venv
	$(VENV_PYTHON) -c "import playwright" 2>/dev/null || $(VENV_PYTHON) -m pip install -e '.[browser]'
	$(VENV_PYTHON) -m pytest -m browser $(PYTEST_ARGS)

## fault-injection: the fault-injection suite through the real daemon path (~3-4 min; prints its counts)
.PHONY: fault-injection
fault-injection: venv
	$(VENV_PYTHON) -m pytest -m faults -s -p no:cacheprovider $(PYTEST_ARGS)
