# msb — developer entry points. `make` lists them; `make check` is what CI runs.
SHELL := /bin/bash
GO ?= go
BIN := bin
FUZZTIME ?= 30s
# Packages whose tests boot real guests; they run serially after the unit tier.
E2E_PKGS := ./test/e2e/...
UNIT_PKGS = $(shell $(GO) list ./... | grep -v /test/e2e)
# The SDK's Example functions, run against real sandboxes (examples_run_test.go).
EXAMPLES := MSB_RUN_EXAMPLES=1 MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -timeout 10m -v -run '^TestExamplesRun$$' .
LDFLAGS := -s -w -X github.com/msb-go/msb/internal/cli.Version=$(shell git describe --always --dirty 2>/dev/null || echo dev)

.DEFAULT_GOAL := help

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

setup: ## Install the Debian packages the build and the demo need (idempotent; root)
	@scripts/setup.sh demo

setup-test: ## Install those and the packages only the tests and benchmarks use
	@scripts/setup.sh test

build: agentd ## Build bin/msb and bin/agentd (both static)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/msb ./cmd/msb

agentd: ## Build the static guest agent bin/agentd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/agentd ./cmd/agentd

shim: ## Build containerd's runtime shim bin/containerd-shim-msb-v2 (docs/kubernetes.md)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/containerd-shim-msb-v2 ./cmd/containerd-shim-msb-v2

kernel: setup ## Build (or reuse from ~/.cache/msb) the guest kernel, linked as bin/vmlinux
	@mkdir -p $(BIN)
	@k=$$(scripts/kernel/build.sh) && ln -sf "$$k" $(BIN)/vmlinux && echo "kernel: $$k"

rootfs: setup ## Build (or reuse) the busybox demo root directory
	@scripts/images/busybox-rootfs.sh

demo: build kernel rootfs ## Run a command in a sandbox built from the busybox demo rootfs
	@scripts/demo.sh

test: setup-test kernel ## Unit tests (-race), then the e2e tier under QEMU (the SDK's examples included), serially
	$(GO) test -race -shuffle=on -timeout 20m $(UNIT_PKGS)
	CGO_ENABLED=0 $(GO) test -count=1 -run 'Harden' ./internal/supervisor ./internal/vmm
	MSB_CONTAINERD2_BIN=$$(scripts/containerd2.sh) MSB_CRICTL_BIN=$$(scripts/crictl.sh) MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -p 1 -timeout 30m -v $(E2E_PKGS) 2>&1 | scripts/e2e-summary.sh
	$(EXAMPLES) 2>&1 | scripts/e2e-summary.sh

test-unit: ## Unit tests only (no QEMU)
	$(GO) test -race -shuffle=on $(UNIT_PKGS)

test-e2e: setup-test kernel ## The e2e tier only, the SDK's examples included
	MSB_CONTAINERD2_BIN=$$(scripts/containerd2.sh) MSB_CRICTL_BIN=$$(scripts/crictl.sh) MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -p 1 -timeout 30m -v $(E2E_PKGS) 2>&1 | scripts/e2e-summary.sh
	$(EXAMPLES) 2>&1 | scripts/e2e-summary.sh

test-e2e-full: setup-test kernel ## The e2e tier with the full-size suites (msb cp of ~100 MiB in ~3000 files)
	MSB_E2E_FULL=1 MSB_CONTAINERD2_BIN=$$(scripts/containerd2.sh) MSB_CRICTL_BIN=$$(scripts/crictl.sh) MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -p 1 -timeout 60m -v $(E2E_PKGS) 2>&1 | scripts/e2e-summary.sh

test-fidelity: setup-test kernel ## The guest-fidelity tier in full: CPython's regression tests in a guest and in a host chroot, no difference allowed
	MSB_FIDELITY_FULL=1 MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -p 1 -timeout 120m -v -run 'Fidelity' $(E2E_PKGS) 2>&1 | scripts/e2e-summary.sh

test-reliability: setup-test kernel ## Faults and load in full (kill -9, guest panic, disk full, locked/corrupt store, floods, 20 runs at once): one table
	MSB_RELIABILITY_FULL=1 MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -count=1 -p 1 -timeout 60m -v -run 'TestReliability' $(E2E_PKGS) 2>&1 | tee $(BIN)/reliability.txt | scripts/e2e-summary.sh

test-kvm: ## KVM-level tests on /dev/kvm, failing (not skipping) without it
	MSB_REQUIRE_KVM=1 $(GO) test -count=1 ./internal/vmm/...

fuzz: ## Run every fuzz target for FUZZTIME each (default 30s)
	@scripts/fuzz.sh $(FUZZTIME)

bench: setup-test kernel rootfs ## Benchmarks (agent, store, codecs, rootfs, boot, network), then make compare
	MSB_KERNEL=$(CURDIR)/$(BIN)/vmlinux $(GO) test -run '^$$' -bench . -skip '^BenchmarkCompare' -benchmem -count 1 ./... 2>&1 | tee $(BIN)/bench.txt | grep -E '^(Benchmark|ok|FAIL|---)'
	@scripts/compare.sh $(COMPARE_FLAGS)

compare: setup-test kernel rootfs ## msb next to its peers, one table (bin/compare.json); COMPARE_FLAGS="-quick -rounds 1" for a short run
	@scripts/compare.sh $(COMPARE_FLAGS)

lint: ## gofmt, go vet (linux and darwin), staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...
	$(GO) tool staticcheck ./...

docs: ## Regenerate docs/cli.md from the command tree
	$(GO) run ./tools/gendocs > docs/cli.md

check: lint test ## Everything CI runs

clean: ## Remove build outputs (the kernel cache in ~/.cache/msb stays)
	rm -rf $(BIN)

.PHONY: help docs setup setup-test build agentd shim kernel rootfs demo test test-unit test-e2e test-e2e-full test-fidelity test-reliability test-kvm fuzz bench compare lint check clean
