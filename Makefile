# ocpv-dr: disaster recovery for OpenShift Virtualization.
# `make help` lists the targets. Build outputs and tool caches live in .cache/.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
CACHE := $(ROOT)/.cache
BIN := $(CACHE)/bin
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(ROOT)/ansible.cfg
GO ?= go
GOTEST_FLAGS ?= -count=1 -timeout 45m
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/ocpv-dr/ocpv-dr/pkg/version.Version=$(VERSION)
# What `make build` builds; each binary is named after its package's directory.
BUILD_PKGS := ./cmd/forwarder ./cmd/receiver ./cmd/ocpdr-host ./test/lab/labctl ./test/sim/cmd/labsim ./test/demo
BINARIES := $(notdir $(BUILD_PKGS))
# Tracked and new (not ignored) Go files that exist in the work tree.
GOFILES = $(wildcard $(shell git ls-files -co --exclude-standard '*.go'))
# Flags of the fast tier's `go test -short` (cached: no -count=1).
CHECK_TEST_FLAGS ?= -timeout 15m
# The Python Ansible runs with (Debian's, which has pytest and Ansible's libraries).
PYTHON ?= /usr/bin/python3

.PHONY: help
help: ## Show this help
	@awk 'BEGIN{FS=":.*##"; printf "ocpv-dr targets:\n"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: deps
deps: ## Install the Debian packages the tests and the demo need (apt-get when root)
	@bash hack/deps.sh

.PHONY: tools
tools: ## Build the lab's kube-apiserver, kube-controller-manager, etcd and versitygw (cached)
	@bash test/lab/build-tools.sh

.PHONY: build
build: ## Build forwarder, receiver, labctl, labsim and demo into .cache/bin
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ $(BUILD_PKGS)

.PHONY: fmt
fmt: ## Format Go code (gofmt, then goimports grouping when the Go module proxy serves it)
	gofmt -w $(GOFILES)
	@GO=$(GO) bash hack/goimports.sh fix

# lint's parts are separate targets so that `make -k check` reports every failure.
.PHONY: lint lint-gofmt lint-imports lint-vet lint-yaml lint-ansible
lint: lint-gofmt lint-imports lint-vet lint-yaml lint-ansible ## gofmt, goimports grouping, go vet, yamllint, ansible-lint (production profile)

lint-gofmt:
	@out=$$(gofmt -l $(GOFILES)); if [ -n "$$out" ]; then echo "gofmt needed (make fmt):"; echo "$$out"; exit 1; fi

lint-imports:
	@GO=$(GO) bash hack/goimports.sh check

lint-vet:
	$(GO) vet ./...

lint-yaml: deps
	yamllint -s .

lint-ansible: deps
	bash hack/ansible-lint.sh

.PHONY: check check-unit check-python
check: lint check-unit check-python ## Fast tier, no lab: lint, `go test -short`, pytest (`make -k check` reports every failure)

check-python: deps ## pytest of the Ansible modules' logic (module_utils); as root it mounts small XFS filesystems
	$(PYTHON) -m pytest -q -p no:cacheprovider test/python

check-unit:
	$(GO) test -short $(CHECK_TEST_FLAGS) ./...

.PHONY: test-unit
test-unit: ## Go unit tests (no lab)
	$(GO) test -short $(GOTEST_FLAGS) ./...

.PHONY: test-go
test-go: deps tools build ## Every Go test, including the ones against the lab
	$(GO) test $(GOTEST_FLAGS) ./...

.PHONY: test
test: deps tools build check test-go ## Everything: check (lint, unit), then lab integration, Ansible and e2e tests

.PHONY: lab-up
lab-up: deps tools build ## Start the two-site lab in the background (.lab/env, .lab/inventory.ini)
	@$(BIN)/labctl up --dir $(ROOT)/.lab

.PHONY: lab-down
lab-down: ## Stop the lab's processes and remove .lab/
	@if [ -x $(BIN)/labctl ]; then $(BIN)/labctl down --dir $(ROOT)/.lab; else $(GO) run ./test/lab/labctl down --dir $(ROOT)/.lab; fi

.PHONY: lab-status
lab-status: ## Show whether the lab's parts answer
	@$(BIN)/labctl status --dir $(ROOT)/.lab

.PHONY: demo
demo: deps tools build ## The main job: the three modes on the local lab, explained step by step
	@$(BIN)/labctl down --dir $(ROOT)/.lab >/dev/null
	@$(BIN)/labctl up --dir $(ROOT)/.lab
	@$(BIN)/demo --lab $(ROOT)/.lab --bin $(BIN) --work $(ROOT)/.lab/demo

.PHONY: e2e
e2e: deps tools build ## The demo's flow as a test, with assertions at every step
	$(GO) test $(GOTEST_FLAGS) -run . ./test/e2e/...

.PHONY: faults
faults: deps build ## Run the fault suite and write FAULTS.md (needs root: mounts small filesystems)
	@bash test/faults/render.sh

.PHONY: bench
bench: deps tools build ## Run the benchmarks and write BENCHMARKS.md
	@bash test/bench/run.sh

.PHONY: clean
clean: lab-down ## Remove what `make build` writes (keeps the tool cache)
	rm -f $(addprefix $(BIN)/,$(BINARIES))
