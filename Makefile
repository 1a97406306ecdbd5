# Top-level entry points. `make demo` and `make test` are the two commands a newcomer needs.
SHELL := /bin/bash
.DEFAULT_GOAL := help
ROOT := $(abspath .)
export PATH := $(HOME)/.cargo/bin:$(PATH)

help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | sort

include e2e/cluster/cluster.mk
