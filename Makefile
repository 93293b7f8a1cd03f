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
build: ## Build forwarder, receiver and labctl into .cache/bin
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN)/ ./cmd/forwarder ./cmd/receiver ./test/lab/labctl ./test/sim/cmd/labsim ./test/demo

.PHONY: fmt
fmt: ## Format Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: lint
lint: deps ## gofmt, go vet, yamllint, ansible-lint (production profile)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	yamllint -s .
	bash hack/ansible-lint.sh

.PHONY: test-unit
test-unit: ## Go unit tests (no lab)
	$(GO) test -short $(GOTEST_FLAGS) ./...

.PHONY: test-go
test-go: deps tools build ## Every Go test, including the ones against the lab
	$(GO) test $(GOTEST_FLAGS) ./...

.PHONY: test
test: deps tools build lint test-go ## Everything: lint, unit, lab integration, Ansible and e2e tests

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
clean: lab-down ## Remove build outputs (keeps the tool cache)
	rm -f $(BIN)/forwarder $(BIN)/receiver $(BIN)/labctl
