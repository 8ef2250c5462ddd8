# Steward — developer entry points. `make local` and `make test` are the README's two commands.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
export STEWARD_CACHE ?= $(HOME)/.cache/steward

.PHONY: install local test check lint format typecheck layers pytest testbin testenv nodebin image crd bench bench-quick soak clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

## Run Steward on its embedded default: local mode over examples/ (no cluster). Ctrl-C stops.
local: install
	$(BIN)/steward local examples/

## The whole test suite: lint, types, layer contracts, then pytest on real parts.
test: check pytest

check: lint typecheck layers

PY_DIRS := $(wildcard operator tests bench hack)

lint: install
	$(BIN)/ruff check $(PY_DIRS)
	$(BIN)/ruff format --check $(PY_DIRS)

format: install
	$(BIN)/ruff format $(PY_DIRS)
	$(BIN)/ruff check --fix $(PY_DIRS)

typecheck: install
	$(BIN)/mypy

layers: install
	$(BIN)/lint-imports

## pytest with every real part it needs: Docker engine, test images, the control plane.
pytest: install
	bash hack/test.sh $(PYTEST_ARGS)

## Regenerate crds/ (and the chart's copies), deploy/, the chart's admission policy and the
## references from the pydantic models.
crd: install
	$(BIN)/steward crd --write crds/managedservices.steward.dev.yaml
	cp crds/managedservices.steward.dev.yaml charts/steward/crds/managedservices.steward.dev.yaml
	$(BIN)/steward crd --reference --write docs/reference.md
	$(BIN)/python -m steward.api.generated .

## Build (or reuse) kube-apiserver/kubectl/etcd/helm from Go modules; prints the bin dir.
testbin:
	bash hack/testenv/build-testbin.sh

## Start a throwaway kube-apiserver + etcd and print `export KUBECONFIG=...`.
## `make testenv ARGS=--node` (root): a whole single-node cluster with a kubelet
## (hack/testenv/cluster.py; builds the node binaries on first use, ~12 min).
testenv: install
	@if [ "$(filter --node,$(ARGS))" ]; then \
	  bash hack/testenv/node/ensure-packages.sh && \
	  STEWARD_TESTBIN="$$(bash hack/testenv/build-testbin.sh)" \
	  STEWARD_NODEBIN="$$(bash hack/testenv/build-node.sh)" \
	  $(BIN)/python -m hack.testenv.cluster $(ARGS); \
	else \
	  STEWARD_TESTBIN="$$(bash hack/testenv/build-testbin.sh)" $(BIN)/python -m hack.testenv.controlplane $(ARGS); \
	fi

## Build (or reuse) the node binaries: kubelet, scheduler, controller-manager, kube-proxy, pause.
nodebin:
	bash hack/testenv/build-node.sh

## The operator image as an archive for `docker load` / `ctr images import` (no Docker needed);
## `make image IMAGE_ARGS=--docker` builds the Dockerfile with the local engine instead.
image: install
	bash hack/image/build-image.sh $(IMAGE_ARGS)

## Benchmarks: Steward next to the raw cost of the same work (real control plane + Docker).
## Full ~6 min, quick ~2.5 min on 2 cores; results in bench/results/, table in bench/README.md.
bench: install
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

## 1,000 services for 30 min with crashes and spec changes: does the operator's RSS grow?
soak: install
	$(BIN)/python -m bench.run --only SOAK $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
