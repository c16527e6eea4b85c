# Local development. GNU make; run from the repository root.

PYTHON ?= python3
VENV ?= .venv
VENV_PYTHON := $(VENV)/bin/python
# Extra arguments, e.g. `make run ARGS="--fresh --rate 5"` or `make test PYTEST_ARGS="-k world"`.
ARGS ?=
PYTEST_ARGS ?=
# Installs go through uv (from PyPI, installed into the venv itself: seconds instead of minutes), and through pip when
# uv cannot be had or fails. `make venv INSTALLER=pip` forces pip.
INSTALLER ?= uv
DEV_EXTRAS := .[test,local,lint,k8s,oracle]
# uv does not write .pyc files at install time (pip does; uv's --compile-bytecode compiles every package: a minute
# here). Python writes them on first import, for what is used, unless PYTHONDONTWRITEBYTECODE is set: then every
# start (dagster dev, each run worker, pytest) would compile the same modules again, about three times slower.
unexport PYTHONDONTWRITEBYTECODE
# The fast tier runs without any network at all (not even loopback) where the machine lets us make a network
# namespace; elsewhere its conftest refuses sockets instead.
NO_NETWORK := $(shell unshare -rn true 2>/dev/null && echo "unshare -rn")

.PHONY: venv run test lint unit integration e2e format

# $(call install,REQUIREMENTS): uv when INSTALLER=uv and uv installs and succeeds, else pip; one line of output.
define install
	start=$$(date +%s); \
	if [ "$(INSTALLER)" = uv ] && { test -x $(VENV)/bin/uv || $(VENV_PYTHON) -m pip install -q uv >/dev/null 2>&1; } \
	    && $(VENV)/bin/uv pip install -q --python $(VENV_PYTHON) $(1); then how=uv; \
	else how=pip; $(VENV_PYTHON) -m pip install -q $(1) || exit 1; fi; \
	echo "installed $(1) with $$how in $$(( $$(date +%s) - start )) s"
endef

## venv: create .venv if missing and install the project (editable) with its test, lint, local-stack, k8s and oracle extras
venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(VENV_PYTHON) || $(PYTHON) -m venv $(VENV)
	@$(call install,-e '$(DEV_EXTRAS)')
	@touch $@

## run: the whole local stack in the foreground (moto SQS, stand-ins, SQLite Delius, simulator, dagster dev)
run: venv
	@$(VENV_PYTHON) -m integration.local $(ARGS)

## test: the test suite (unit, integration and end-to-end tiers; the browser and fault suites run on their own)
test: venv
	$(VENV_PYTHON) -m pytest $(PYTEST_ARGS)

## lint: ruff (rules and formatting) and mypy, as configured in pyproject.toml
lint: venv
	$(VENV)/bin/ruff check integration integration_tests bench
	$(VENV)/bin/ruff format --check integration integration_tests bench
	$(VENV)/bin/mypy

## format: apply ruff's formatting and safe fixes
format: venv
	$(VENV)/bin/ruff check --fix integration integration_tests bench
	$(VENV)/bin/ruff format integration integration_tests bench

## unit: the fast tier (pure core, merge plan, flows and Dagster definitions on fakes and SQLite), no network
unit: venv
	$(NO_NETWORK) $(VENV_PYTHON) -m pytest integration_tests/unit -q -p no:cacheprovider $(PYTEST_ARGS)

## integration: PostgreSQL, moto's SQS server and the HTTP stand-ins, in process
integration: venv
	$(VENV_PYTHON) -m pytest integration_tests/integration $(PYTEST_ARGS)

## e2e: the daemon, dagster dev and the production profile as subprocesses
e2e: venv
	$(VENV_PYTHON) -m pytest integration_tests/e2e $(PYTEST_ARGS)

## browser-test: the UI test in headless chromium (needs Debian's chromium: apt-get install -y chromium)
.PHONY: browser-test
browser-test: venv
	@if ! $(VENV_PYTHON) -c "import playwright" 2>/dev/null; then $(call install,-e '.[browser]'); fi
	$(VENV_PYTHON) -m pytest -m browser $(PYTEST_ARGS)

## fault-injection: the fault-injection suite through the real daemon path (~3-4 min; prints its counts)
.PHONY: fault-injection
fault-injection: venv
	$(VENV_PYTHON) -m pytest -m faults -s -p no:cacheprovider $(PYTEST_ARGS)
