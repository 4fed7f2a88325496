# The README's quickstart is two commands: `make demo` and `make test`.
# Both create .venv on first use and (re)install the project when
# pyproject.toml changes, so a fresh clone needs only Python 3.11 and pip.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint sim bench bench-smoke faults faults-short netns clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (rantai needs Python 3.11 or newer; set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[node,test]'
	@touch $(STAMP)

# The whole suite: lint (ruff, and mypy strict for consensus/ and the pure format), then every test.
test: lint
	$(BIN)/python -m pytest -m "not faults"

# mypy checks the installed names (rantai.consensus, ...), which the package-dir mapping takes
# from renamed folders, so it reads them through a tree of links in .mypy-src/.
# Both tools always run, so one pass shows every finding; either failing fails the target.
lint: $(STAMP)
	@mkdir -p .mypy-src/rantai
	@for p in consensus client node; do ln -sfn ../../$$p .mypy-src/rantai/$$p; done
	@status=0; \
	echo "$(BIN)/ruff check ."; $(BIN)/ruff check . || status=1; \
	echo "$(BIN)/mypy -p rantai.consensus -p rantai.client -p rantai.node"; \
	$(BIN)/mypy -p rantai.consensus -p rantai.client -p rantai.node || status=1; \
	exit $$status

demo: $(STAMP)
	$(BIN)/rantai demo $(DEMO_FLAGS)

sim: $(STAMP)
	$(BIN)/python -m rantai.consensus.sim --seeds 1000 --nodes 4 --faults all

# The long fault-injection run (tests/faults/): kills and partition periods under client load, then
# the checks (one chain, audit per node, no acknowledged record lost). FAULTS_FLAGS=--seed N replays.
faults-short: $(STAMP)
	$(BIN)/python -m pytest -m faults tests/faults

faults: $(STAMP)
	$(BIN)/python -m tests.faults.run --kills 100 --partitions 20 $(FAULTS_FLAGS)

# Four validators in four Linux network namespaces over TLS (tests/netns/; also part of `make test`,
# where it is skipped without root or `ip netns`). About a minute.
netns: $(STAMP)
	$(BIN)/python -m pytest -s -m netns tests/netns

bench: $(STAMP)
	$(BIN)/rantai bench --json .rantai/bench.json

# Each bench shape run tiny, its JSON checked for completeness and consistency (part of `make test` too).
bench-smoke: $(STAMP)
	$(BIN)/python -m pytest -q tests/client/test_bench_smoke.py tests/client/test_bench_leanhttp.py

clean:
	rm -rf $(VENV) .rantai .pytest_cache .hypothesis .mypy-src .mypy_cache .ruff_cache
