# The README's commands. Each installs what it needs (Debian packages via scripts/deps.sh).
SWIFT ?= swift
DATA ?= /usr/share/datasets/fashion-mnist

.PHONY: run test build bench deps

deps:
	./scripts/deps.sh

build: deps
	$(SWIFT) build -c release --product fedpi

# Main job: train mnist-cnn for one epoch on Fashion-MNIST and report test accuracy.
run: build
	.build/release/fedpi train --data $(DATA) --model mnist-cnn --epochs 1 --batch-size 64 --lr 0.01

# The Swift suite (XCTest; the Swift Testing runner is off so the log holds XCTest's summary), then
# the Python interop check (installs safetensors + numpy from PyPI into .build/pyenv).
test: deps
	$(SWIFT) test --disable-swift-testing
	./scripts/interop.sh

# FedPi vs PyTorch on this machine (installs PyTorch from PyPI into bench/.venv).
bench: build
	./bench/train.sh
