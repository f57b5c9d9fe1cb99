#!/usr/bin/env bash
# The VAE's blur and its cures on Fashion-MNIST: the plain vae, the vae with the perceptual loss, and VAE-GAN,
# each for the same budget; then the protocol's FID, KID, precision/recall and sharpness on --n samples each, and
# one comparison table. The budget is minutes of wall clock each (equal CPU time) or, written steps=N, N training
# steps each (equal training progress). Run by hand (2 CPU cores: nothing else running); results go to
# docs/BENCHMARKS.md.
#   bash benchmarks/vae_blur.sh 5 2000 runs/blur              # 5 minutes per model, 2,000 samples per evaluation
#   bash benchmarks/vae_blur.sh steps=2000 2000 runs/blur     # 2,000 steps per model
set -euo pipefail
budget=${1:-5}; n=${2:-2000}; out=${3:-runs/blur}
if [[ $budget == steps=* ]]; then budget_opt=(--steps "${budget#steps=}"); else budget_opt=(--minutes "$budget"); fi
genlab train vae --data fashion-mnist "${budget_opt[@]}" --out "$out/vae" --overwrite --no-progress
genlab train vae --data fashion-mnist "${budget_opt[@]}" --set perceptual=1 --out "$out/vae-perceptual" \
    --overwrite --no-progress
genlab train vaegan --data fashion-mnist "${budget_opt[@]}" --out "$out/vaegan" --overwrite --no-progress
for run in vae vae-perceptual vaegan; do
    genlab eval "$out/$run" --metrics fid,kid,pr,sharpness --n "$n"
done
genlab compare "$out/vae" "$out/vae-perceptual" "$out/vaegan" --out "$out/compare"
cat "$out/compare/compare.md"
