# The two commands a newcomer needs:
#   make demo   - runs botstream on the embedded default (local Kafka, worker, simulated traffic)
#   make test   - runs the whole test suite (unit + integration on a real local broker)
# Both create or reuse .venv in the repo and install what they need.
#   make bench  - the benchmark suite against the peer engines (not a test; about an hour;
#                 BENCH_ARGS="--events 50000 --runs 1" for a quick one, see benchmarks/bench.py)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ARGS ?=

.PHONY: demo test lint unit integration bench clean reliability fuzz browser

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# The reliability harness (reliability/) also needs the fuzzer of the `reliability` extra.
RELIABILITY_STAMP := $(VENV)/.installed-reliability

$(RELIABILITY_STAMP): pyproject.toml $(STAMP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,reliability]'
	@touch $(RELIABILITY_STAMP)

# The dashboard's browser test drives Debian's chromium (never a browser of Playwright's
# own). Install it where we can (CI runs as root on Debian); quick when it is there.
# Where it cannot be installed, the test is skipped and the summary says why.
CHROMIUM := /usr/bin/chromium

browser:
	@test -x $(CHROMIUM) || { \
	  mkdir -p .botstream-data; \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium for the browser test (apt-get, about a minute) ..."; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	        chromium fonts-dejavu-core; } >.botstream-data/chromium-install.log 2>&1 \
	      || echo "chromium could not be installed (.botstream-data/chromium-install.log):" \
	              "the browser test will be skipped"; \
	  else \
	    echo "no $(CHROMIUM), and apt-get needs root: the browser test will be skipped"; \
	  fi; }

demo: $(STAMP)
	$(BIN)/botstream demo

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit

integration: $(STAMP) browser
	$(BIN)/python -m pytest tests/integration

# Every section of the reliability harness; figures go to docs/reliability.md.
reliability: $(RELIABILITY_STAMP)
	$(BIN)/python -m reliability all

# Hostile input only: 1,000,000 records each to the decoder, the replay and a worker.
fuzz: $(RELIABILITY_STAMP)
	$(BIN)/python -m reliability fuzz

# The bench extra: the peer engines, matplotlib for the chart, py-spy for --profile.
$(BENCH_STAMP): pyproject.toml $(STAMP)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

# botstream's modules byte-compiled first, as an installed package's are (an editable
# install compiles them on import, and every time where PYTHONDONTWRITEBYTECODE is set).
bench: $(BENCH_STAMP)
	@$(BIN)/python -m compileall -q src benchmarks >/dev/null
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
