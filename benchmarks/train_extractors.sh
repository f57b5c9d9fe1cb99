#!/usr/bin/env bash
# Train the evaluation protocol's shipped feature extractors (run by hand; results in docs/BENCHMARKS.md).
# The printed sha256 and test accuracy go into genlab/metrics/features.py (SHIPPED).
set -euo pipefail
cd "$(dirname "$0")/.."
genlab=.venv/bin/genlab
$genlab extractor --data digits --epochs 40 --out genlab/metrics/weights/digits.safetensors
$genlab extractor --data mnist5k --epochs 25 --out genlab/metrics/weights/mnist5k.safetensors
$genlab extractor --data fashion-mnist --epochs 12 --out genlab/metrics/weights/fashion-mnist.safetensors
