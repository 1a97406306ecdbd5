# Local single-node Kubernetes cluster built from source (see e2e/cluster/README.md).
# Included by the top-level Makefile, which defines ROOT (the repository root).
E2E ?= $(ROOT)/.e2e
CLUSTER_SH := $(ROOT)/e2e/cluster
# NODES (default 3, then what the running cluster has) is passed through when given.
CLUSTER_ENV := ROOT=$(ROOT) E2E=$(E2E) $(if $(NODES),NODES=$(NODES))
CLUSTER_APT_PKGS := containerd runc containernetworking-plugins buildah iptables conntrack gcc libc6-dev busybox-static

.PHONY: node-down node-up object-store cluster cluster-down cluster-clean cluster-check cluster-tools image deps-cluster

cluster: deps-cluster ## Start the local Kubernetes cluster, NODES=3 nodes by default (builds what is missing; idempotent)
	@$(CLUSTER_ENV) $(CLUSTER_SH)/up.sh

object-store: ## (Re)start only the S3 object store (SeaweedFS, on 10.244.0.1:8333 for pods; see e2e/cluster/objectstore.sh)
	@$(CLUSTER_ENV) $(CLUSTER_SH)/up.sh object-store

cluster-down: ## Stop every process of the local cluster; remove its bridge, iptables chains, mounts
	@$(CLUSTER_ENV) $(CLUSTER_SH)/down.sh

cluster-clean: ## cluster-down, then wipe the cluster state under .e2e/ (keeps .e2e/bin and Go caches)
	@$(CLUSTER_ENV) $(CLUSTER_SH)/down.sh --clean

cluster-check: ## Prove the running cluster works (node, version, Deployment, Service, API from a pod, authn, helm, object store)
	@$(CLUSTER_ENV) $(CLUSTER_SH)/check.sh

cluster-tools: deps-cluster ## Build the cluster binaries (kubernetes, etcd, helm, crictl, weed, pause) into .e2e/bin
	@$(CLUSTER_ENV) $(CLUSTER_SH)/build.sh all

image: deps-cluster ## Build image localhost/tfs:dev from target/release and import it into containerd
	@$(CLUSTER_ENV) $(CLUSTER_SH)/image.sh tfs

deps-cluster: ## Install the Debian packages the cluster needs (only what is missing)
	@missing=$$(for p in $(CLUSTER_APT_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

node-down: ## Lose a node (NODE=node-2): its processes frozen, its traffic dropped
	@test -n "$(NODE)" || { echo "usage: make node-down NODE=node-<n>"; exit 2; }
	@$(CLUSTER_ENV) $(CLUSTER_SH)/node-down.sh $(NODE)

node-up: ## Bring back a node lost with node-down (NODE=node-2) and wait until it is Ready
	@test -n "$(NODE)" || { echo "usage: make node-up NODE=node-<n>"; exit 2; }
	@$(CLUSTER_ENV) $(CLUSTER_SH)/node-up.sh $(NODE)
