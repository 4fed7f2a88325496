# The README's quickstart is two commands: `make demo` and `make test`.
# Both create .venv on first use and (re)install the project when
# pyproject.toml changes, so a fresh clone needs only Python 3.11 and pip.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test sim bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (rantai needs Python 3.11 or newer; set PYTHON=...)"; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[node,test]'
	@touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

demo: $(STAMP)
	$(BIN)/rantai demo $(DEMO_FLAGS)

sim: $(STAMP)
	$(BIN)/python -m rantai.consensus.sim --seeds 1000 --nodes 4 --faults all

bench: $(STAMP)
	$(BIN)/rantai bench --json .rantai/bench.json

clean:
	rm -rf $(VENV) .rantai .pytest_cache .hypothesis
