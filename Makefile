# stomp-gateway: bootstrap, run and test.
#
#   make run    [ARGS="--port 15675"]   venv + RabbitMQ, then the gateway (ws://localhost:15674/ws)
#   make test   [PYTEST_ARGS="-k ack"]  venv (+dev) + RabbitMQ, ruff, mypy, pytest with coverage
#   make lint                           ruff + mypy only
#   make unit                           pytest tests/unit only (no broker needed)
#   make e2e    [PYTEST_ARGS="-k demo"] RabbitMQ + Chromium/PHP/npm deps, pytest tests/e2e only
#   make clean / make distclean         caches and artifacts / the same plus .venv
#
# The venv is (re)installed only when pyproject.toml is newer than the stamp file in
# $(VENV); delete the stamp (or `make distclean`) to force a reinstall.

PYTHON ?= python3
VENV ?= .venv
ARGS ?=
PYTEST_ARGS ?=
ARTIFACTS ?= .artifacts
# The interop tests enable the real rabbitmq_web_stomp plugin themselves (tests/conftest.py)
# and disable it again at the end of the run if they enabled it, so 15674 stays free.
# Where the broker is expected (read by scripts/ensure-rabbitmq.sh).
AMQP_HOST ?= 127.0.0.1
AMQP_PORT ?= 5672
export AMQP_HOST AMQP_PORT

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
MAKEFLAGS += --no-builtin-rules --no-print-directory

BIN := $(VENV)/bin
VENV_PY := $(BIN)/python
PIP := $(VENV_PY) -m pip --disable-pip-version-check --no-input
# Drops the warnings some machines' pip.conf causes (index locations that do not exist).
PIP_QUIET := 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }
STAMP_FAST := $(VENV)/.stamp-fast
STAMP_DEV := $(VENV)/.stamp-dev

RUFF := $(BIN)/ruff check gateway tests
MYPY := $(BIN)/mypy gateway
PYTEST := $(VENV_PY) -m pytest

.DEFAULT_GOAL := help
.PHONY: help run test lint unit e2e rabbitmq venv dev clean distclean fuzz

help:
	@sed -n '3,9s/^# \{0,1\}//p' $(firstword $(MAKEFILE_LIST))

# ---------------------------------------------------------------- bootstrap --
$(VENV_PY):
	@echo "== creating $(VENV) with $$($(PYTHON) --version)"
	@$(PYTHON) -m venv --clear $(VENV)

$(STAMP_FAST): pyproject.toml | $(VENV_PY)
	@echo "== installing stomp-gateway[fast] into $(VENV)"
	@$(PIP) install -q -e '.[fast]' $(PIP_QUIET)
	@touch $@

# dev includes fast, so a dev install also satisfies `make run`.
$(STAMP_DEV): pyproject.toml | $(VENV_PY)
	@echo "== installing stomp-gateway[fast,dev] into $(VENV)"
	@$(PIP) install -q -e '.[fast,dev]' $(PIP_QUIET)
	@touch $@ $(STAMP_FAST)

venv: $(STAMP_FAST)
dev: $(STAMP_DEV)

rabbitmq:
	@bash scripts/ensure-rabbitmq.sh

# ---------------------------------------------------------------------- run --
run: $(STAMP_FAST) rabbitmq
	@$(if $(findstring --port,$(ARGS)),:,if timeout 1 bash -c '</dev/tcp/127.0.0.1/15674' 2>/dev/null; then \
	    echo "warning: port 15674 is taken (is the rabbitmq_web_stomp plugin enabled?): make run ARGS='--port 15675'"; fi)
	@echo "== stomp-gateway (default ws://localhost:15674/ws) $(ARGS)"
	exec $(BIN)/stomp-gateway $(ARGS)

# --------------------------------------------------------------------- test --
# Every step runs even when an earlier one failed, so one CI log shows them all;
# the target fails if any did. pytest's exit 5 (no tests collected) is a failure.
test: $(STAMP_DEV)
	@bash scripts/ensure-rabbitmq.sh
	@bash scripts/ensure-e2e-deps.sh || echo "== e2e dependencies incomplete: the tests needing them skip (see the pytest summary)"
	@failed=; \
	echo "== ruff"; $(RUFF) || failed="$$failed ruff"; \
	echo "== mypy"; $(MYPY) || failed="$$failed mypy"; \
	echo "== pytest"; mkdir -p $(ARTIFACTS); rc=0; \
	$(PYTEST) --cov=gateway --cov-report=term \
	    --cov-report=xml:$(ARTIFACTS)/coverage.xml \
	    --junitxml=$(ARTIFACTS)/junit.xml $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure"; fi; \
	if [ $$rc -ne 0 ]; then failed="$$failed pytest(exit $$rc)"; fi; \
	if [ -n "$$failed" ]; then echo "== make test FAILED:$$failed"; exit 1; fi; \
	echo "== make test passed"

lint: $(STAMP_DEV)
	@failed=; \
	echo "== ruff"; $(RUFF) || failed="$$failed ruff"; \
	echo "== mypy"; $(MYPY) || failed="$$failed mypy"; \
	if [ -n "$$failed" ]; then echo "== make lint FAILED:$$failed"; exit 1; fi

unit: $(STAMP_DEV)
	@rc=0; $(PYTEST) tests/unit $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure"; fi; \
	exit $$rc

e2e: $(STAMP_DEV)
	@bash scripts/ensure-rabbitmq.sh
	@bash scripts/ensure-e2e-deps.sh || echo "== e2e dependencies incomplete: the tests needing them skip (see the pytest summary)"
	@rc=0; $(PYTEST) tests/e2e $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests (exit 5): treated as a failure"; fi; \
	exit $$rc

# -------------------------------------------------------------------- clean --
clean:
	rm -rf $(ARTIFACTS) .pytest_cache .mypy_cache .ruff_cache .hypothesis \
	    .coverage .coverage.* coverage.xml build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)

# --------------------------------------------------------------------- fuzz --
# Time-boxed coverage-guided fuzzing (atheris) of the codec and of a session fed
# arbitrary frames; not part of `make test`. Crashes land in fuzz/crashes/.
FUZZ_SECONDS ?= 60
fuzz: $(STAMP_DEV)
	@$(PIP) install -q atheris $(PIP_QUIET)
	@mkdir -p fuzz/crashes fuzz/work/codec fuzz/work/session
	@for target in codec session; do \
	    echo "== fuzz $$target ($(FUZZ_SECONDS) s)"; \
	    $(VENV_PY) fuzz/fuzz_$$target.py -max_total_time=$(FUZZ_SECONDS) \
	        -artifact_prefix=fuzz/crashes/ fuzz/work/$$target fuzz/corpus/$$target 2>&1 \
	        | grep -E "^Done|ERROR|crash-|Test unit" ; \
	done

# -------------------------------------------------------------------- bench --
# make bench [BENCH_ARGS="--quick"]: the gateway against rabbitmq_web_stomp, every
# scenario, alternating (bench/README.md). Enables rabbitmq_web_stomp/management when
# off and disables afterwards only what it enabled. Writes bench/results/latest.json
# and $(BENCH_MD). Profiling: bench/profile.sh SCENARIO.
BENCH_ARGS ?=
BENCH_MD ?= bench/RESULTS.md
.PHONY: bench
bench: $(STAMP_FAST) rabbitmq
	$(VENV_PY) -m bench.run --ensure-plugins --markdown $(BENCH_MD) $(BENCH_ARGS)
