# clawflow — the two commands a fresh machine needs are `make demo` and `make test`.
SHELL := /bin/bash
SWIFT ?= swift
PREFIX ?= /usr/local

.PHONY: all deps build release demo test bench clean

all: build

# System packages: libinotifytools (the watcher's library), jq (the demo) and strace (the
# crash tests and the benchmark). Installed only when missing; needs root, as on CI.
deps:
	@if [ ! -f /usr/include/inotifytools/inotifytools.h ] || ! command -v jq >/dev/null || ! command -v strace >/dev/null; then \
		echo "Installing libinotifytools0-dev, jq and strace..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libinotifytools0-dev jq strace >/dev/null; \
	fi

build: deps
	$(SWIFT) build

release: deps
	$(SWIFT) build -c release --scratch-path .build-release

# Runs a short job on the default spool (or $CLAWFLOW_SPOOL) and says where it is.
demo: build
	@bash scripts/demo.sh "$$($(SWIFT) build --show-bin-path)/clawflow"

# The whole test suite; its output closes with swift test's summary line.
test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test 2>&1 | tee .build/test-output.txt; exit $${PIPESTATUS[0]}

bench: deps
	@bash bench/run.sh

clean:
	rm -rf .build .build-release .build-bench
