# Developer entry points. Every target works from a fresh clone: `install` builds .venv once
# and is skipped until pyproject.toml changes (the stamp file below records the last install).

PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The client (the root project) and the service (service/) from this tree, editable.
INSTALL_ARGS := -e ".[dev]" -e "./service[gateway]"
PYTEST_FLAGS ?= -q -p no:cacheprovider
# Four test processes, a test file each at a time (its module-scoped workers and gateway stay
# in one process); TEST_PROCESSES=0 runs everything in this one. Files are handed out in
# collection order (--no-loadscope-reorder), where tests/conftest.py puts those marked long
# first: the fault scenarios of tests/chaos, which mostly wait (on redelivery, a frozen Redis,
# a failover) each on its own servers, start at once beside the longest of the rest, and the
# quick files fill in at the end.
TEST_PROCESSES ?= 4
# Ruff also formats code blocks in Markdown; the README quotes the seed's snippet as written.
FORMAT_FLAGS := --extend-exclude '*.md'

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install run test lint format mypy bench chaos clean base-image image compose-test

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
	$(BIN)/python -m pytest $(PYTEST_FLAGS) -n $(TEST_PROCESSES) --dist loadfile \
	  --no-loadscope-reorder $(ARGS)

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

# --- Docker ------------------------------------------------------------------------------------
# The engine must run without a bridge (dockerd --bridge=none --iptables=false); nothing is pulled:
# the base image is made from Debian's packages. BuildKit is needed for the CA build secret: the
# CLI uses buildx when it has it, else the CLI on the default PATH (Debian's docker.io builds in).
BASE_IMAGE ?= tokenwindow-base:bookworm
IMAGE ?= tokenwindow:local
PIP_CERT_FILE ?= /etc/ssl/certs/ca-certificates.crt
ROOTFS := .tokenwindow/rootfs
comma := ,
DOCKER_BUILD ?= $(shell docker buildx version >/dev/null 2>&1 && echo docker || command -v -p docker)

base-image:
	docker image inspect $(BASE_IMAGE) >/dev/null 2>&1 || { mkdir -p $(ROOTFS) && \
	  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
	    bookworm $(ROOTFS) && tar -C $(ROOTFS) -c . | docker import - $(BASE_IMAGE) && rm -rf $(ROOTFS); }

# The registries' CA (when this machine needs one) reaches the install step only, as a secret.
image:
	DOCKER_BUILDKIT=1 $(DOCKER_BUILD) build --network host --build-arg BASE_IMAGE=$(BASE_IMAGE) \
	  $(if $(wildcard $(PIP_CERT_FILE)),--secret id=pip_cert$(comma)src=$(PIP_CERT_FILE)) -t $(IMAGE) .

# Build, compose up on the host network at free ports, a turn via the gateway and the client, down.
compose-test: install base-image
	TOKENWINDOW_BASE_IMAGE=$(BASE_IMAGE) TOKENWINDOW_TEST_IMAGE=$(IMAGE) \
	  $(BIN)/python -m pytest $(PYTEST_FLAGS) tests/deploy/test_compose.py $(ARGS)

clean:
	rm -rf $(VENV) build dist *.egg-info .mypy_cache .ruff_cache .pytest_cache .hypothesis
