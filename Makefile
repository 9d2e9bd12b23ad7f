# The README's commands. Each installs what it needs (Debian packages via scripts/deps.sh).
SWIFT ?= swift
DATA ?= /usr/share/datasets/fashion-mnist
ROUNDS ?= 10

.PHONY: run train test build build-fedpi bench deps

deps:
	./scripts/deps.sh

# The worker in release (it trains; ~4 min to build), everything else in debug (the engine, data and
# wire modules are compiled with -O in every configuration).
build: deps
	$(SWIFT) build -c release --product fedpi-worker
	$(SWIFT) build --product fedpi-aggregator
	$(SWIFT) build --product fedpi

build-fedpi: deps
	$(SWIFT) build -c release --product fedpi

# Main job: a federation on loopback — three workers (classes 0-3, 4-6, 7-9 of Fashion-MNIST) and an
# aggregator, $(ROUNDS) rounds of FedAvgM (the fleet file's default strategy); prints a row per
# round and saves the final model.
run: build
	WORKER_BIN=.build/release BIN=.build/debug DATA=$(DATA) ROUNDS=$(ROUNDS) ./scripts/demo.sh

# One machine, no federation: train mnist-cnn for one epoch and report test accuracy.
train: build-fedpi
	.build/release/fedpi train --data $(DATA) --model mnist-cnn --epochs 1 --batch-size 64 --lr 0.01

# The Swift suite (XCTest; the Swift Testing runner is off so the log holds XCTest's summary), the
# Python interop check (safetensors + numpy from PyPI into .build/pyenv), the dashboard in chromium
# with selenium and promtool on /metrics (Debian's chromium, prometheus; selenium from PyPI), the packaging lint
# (hadolint, shellcheck, systemd-analyze verify), the units in a real systemd (systemd-nspawn), the
# C kernels against scalar references natively and as aarch64 code under qemu-user-static, and the
# container image built and run with podman (compose included, the arm64 runtime stage under qemu).
test: deps
	$(SWIFT) test --disable-swift-testing
	./scripts/kernels-test.sh
	./scripts/interop.sh
	./scripts/dashboard-test.sh
	./scripts/lint.sh
	./scripts/systemd-test.sh
	./scripts/image-test.sh

# FedPi vs PyTorch on this machine (installs PyTorch from PyPI into bench/.venv).
bench: build-fedpi
	./bench/train.sh
