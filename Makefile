# Developer entry points. Every target works from a fresh clone: `install` builds .venv once
# and is skipped until pyproject.toml changes (the stamp file below records the last install).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The client (the root project) and the service (service/) from this tree, editable.
INSTALL_ARGS := -e ".[dev]" -e "./service[gateway]"
PYTEST_FLAGS ?= -q -p no:cacheprovider
# Ruff also formats code blocks in Markdown; the README quotes the seed's snippet as written.
FORMAT_FLAGS := --extend-exclude '*.md'

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test lint format mypy bench chaos clean

install: $(STAMP)

$(STAMP): pyproject.toml service/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(INSTALL_ARGS)
	touch $(STAMP)

# ARGS=--show-logs prints the workers' and Flower's logs here instead of into .run/<time>/.
run: install
	$(BIN)/python -m workers.devstack $(ARGS)

# The tests talk to a real Redis on 127.0.0.1:6379; without one, the embedded server starts there.
test: install
	$(BIN)/python -m workers.embedded_redis --port 6379
	$(BIN)/python -m pytest $(PYTEST_FLAGS) $(ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check $(FORMAT_FLAGS) .
	$(BIN)/mypy

mypy: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format $(FORMAT_FLAGS) .

bench: install
	$(BIN)/python -m bench $(ARGS)

# The fault scenarios of tests/chaos at full size (the test suite runs them small).
chaos: install
	$(BIN)/python -m bench.chaos $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
