# Top-level entry points. `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
KUBECTL := $(ROOT)/.e2e/bin/kubectl
HELM := $(ROOT)/.e2e/bin/helm
export KUBECONFIG ?= $(ROOT)/.e2e/kubeconfig

.PHONY: plugin bench help build release crds check-crds fmt lint unit helm-lint e2e demo test deps chaos fuzz deps-fuzz

help: ## List the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

build: ## Debug build of every crate
	$(CARGO) build --workspace

release: ## Release build of every binary (tfs-nameserver, tfsctl, tfs-operator, chaos, failover-bench, bench-report)
	$(CARGO) build --release --workspace --bins

crds: ## Regenerate crds/ and charts/tfs-operator/crds/ from the Rust types (TfsNameserver, TfsBackup)
	@mkdir -p crds charts/tfs-operator/crds
	@set -e; for c in tfsnameservers tfsbackups; do \
		$(CARGO) run -q -p tfs-operator --bin tfs-operator -- crd $$c > crds/$$c.tfs.io.yaml; \
		cp crds/$$c.tfs.io.yaml charts/tfs-operator/crds/$$c.tfs.io.yaml; \
	done
	@echo "crds: written"

check-crds: ## Fail if the committed CRDs differ from what the types generate
	@set -e; for c in tfsnameservers tfsbackups; do \
		$(CARGO) run -q -p tfs-operator --bin tfs-operator -- crd $$c > /tmp/tfs-crd-$$c.yaml; \
		diff -u crds/$$c.tfs.io.yaml /tmp/tfs-crd-$$c.yaml || { echo "crds/ is stale: run 'make crds'"; exit 1; }; \
		diff -u charts/tfs-operator/crds/$$c.tfs.io.yaml /tmp/tfs-crd-$$c.yaml || { echo "charts/tfs-operator/crds/ is stale: run 'make crds'"; exit 1; }; \
	done
	@echo "check-crds: up to date"

fmt: ## Check formatting
	$(CARGO) fmt --all -- --check

lint: ## clippy with warnings as errors
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit: ## Unit and process-level integration tests (no cluster)
	$(CARGO) test --workspace --exclude tfs-e2e
	$(CARGO) test -p tfs-e2e --lib   # the harness's own unit tests (history parsing, the volume provisioner)

helm-lint: cluster-tools ## helm lint the chart
	$(HELM) lint charts/tfs-operator

deps: ## Install what the build needs (Rust toolchain components, Debian packages for the cluster)
	@command -v cargo >/dev/null || { echo "Rust (cargo) is required: https://rustup.rs"; exit 1; }
	@rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
	@test -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf || apt-get install -y -q fonts-dejavu-core  # bench-report's PNG text
	@$(MAKE) --no-print-directory deps-cluster

plugin: ## Install the kubectl plugin kubectl-tfs into .e2e/bin (on PATH, `kubectl tfs status|switchover` works)
	@# --workspace: the features of the whole workspace, as `make release` builds, so nothing is rebuilt
	$(CARGO) build --release --workspace --bin kubectl-tfs
	@mkdir -p $(ROOT)/.e2e/bin && install -m 0755 $(ROOT)/target/release/kubectl-tfs $(ROOT)/.e2e/bin/kubectl-tfs
	@echo "plugin: .e2e/bin/kubectl-tfs (export PATH=$(ROOT)/.e2e/bin:\$$PATH)"

e2e: release cluster image plugin ## End-to-end suites on the local cluster (installs the chart)
	$(KUBECTL) apply -f examples/storageclass-local.yaml
	$(MAKE) --no-print-directory cluster-check   # nodes, cross-node traffic, a claim on each node, memory
	$(CARGO) test -p tfs-e2e --test backup -- --test-threads=1 --nocapture   # archive to the S3 store, point-in-time restore
	$(CARGO) test -p tfs-e2e --test cluster -- --test-threads=1 --nocapture

CHAOS_FAULTS ?= 30
CHAOS_SEED ?=
chaos: release cluster image ## Randomized faults under load on the local cluster, then the history check (CHAOS_FAULTS=30, CHAOS_SEED=<seed to replay>, CHAOS_KINDS=<kind,...>)
	$(ROOT)/target/release/chaos --faults $(CHAOS_FAULTS) $(if $(CHAOS_SEED),--seed $(CHAOS_SEED)) $(if $(CHAOS_KINDS),--kinds $(CHAOS_KINDS))

demo: deps release cluster image plugin ## The main job: cluster, chart, a TfsNameserver, a failover shown with kubectl
	e2e/demo.sh

bench: release cluster image ## All figures in one run (< 30 min): writes vs etcd and a bare RPC, engine, recovery, failover distributions, criterion; then bench-report (summary lines, tables, plots)
	bench/run.sh

FUZZ_DIR := nameserver/fuzz
FUZZ_SECONDS ?= 60
# A length field that makes a decoder allocate more than 512 MB at once is a failure, not a slow run.
FUZZ_FLAGS ?= -rss_limit_mb=2048 -malloc_limit_mb=512
fuzz: deps-fuzz ## Fuzz every decoder of outside bytes, FUZZ_SECONDS (60) per target; a crash stops with its input in nameserver/fuzz/artifacts/
	cargo +nightly fuzz build --fuzz-dir $(FUZZ_DIR)
	@for t in $$(cargo +nightly fuzz list --fuzz-dir $(FUZZ_DIR)); do \
		log=$(FUZZ_DIR)/target/fuzz-$$t.log; mkdir -p $(FUZZ_DIR)/target/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s (log: $$log)"; \
		if cargo +nightly fuzz run --fuzz-dir $(FUZZ_DIR) $$t $(FUZZ_DIR)/target/corpus/$$t $(FUZZ_DIR)/corpus/$$t -- \
			-max_total_time=$(FUZZ_SECONDS) $(FUZZ_FLAGS) >$$log 2>&1; \
		then grep -E '^#[0-9]+[[:space:]]+DONE' $$log; else tail -n 60 $$log; exit 1; fi; \
	done

deps-fuzz: ## Install what make fuzz needs (a nightly toolchain is checked for, cargo-fuzz is installed)
	@rustup toolchain list 2>/dev/null | grep -q '^nightly' || { echo "make fuzz needs a nightly Rust toolchain (sanitizer coverage): rustup toolchain install nightly"; exit 1; }
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

test: deps fmt lint unit check-crds helm-lint ## Everything CI runs: static checks, unit + process tests, CRD drift, chart lint, e2e on a fresh cluster
	$(MAKE) --no-print-directory e2e
	$(MAKE) --no-print-directory cluster-down

include e2e/cluster/cluster.mk
