#!/usr/bin/env bash
# The VAE's blur and its cures on Fashion-MNIST, at equal wall clock: the plain vae, the vae with the perceptual
# loss, and VAE-GAN; then the protocol's FID, KID, precision/recall and sharpness on --n samples each, and one
# comparison table. Run by hand (2 CPU cores: nothing else running); results go to docs/BENCHMARKS.md.
#   bash benchmarks/vae_blur.sh 5 2000 runs/blur      # minutes per model, samples per evaluation, out
set -euo pipefail
minutes=${1:-5}; n=${2:-2000}; out=${3:-runs/blur}
genlab train vae --data fashion-mnist --minutes "$minutes" --out "$out/vae" --overwrite --no-progress
genlab train vae --data fashion-mnist --minutes "$minutes" --set perceptual=1 --out "$out/vae-perceptual" \
    --overwrite --no-progress
genlab train vaegan --data fashion-mnist --minutes "$minutes" --out "$out/vaegan" --overwrite --no-progress
for run in vae vae-perceptual vaegan; do
    genlab eval "$out/$run" --metrics fid,kid,pr,sharpness --n "$n"
done
genlab compare "$out/vae" "$out/vae-perceptual" "$out/vaegan" --out "$out/compare"
cat "$out/compare/compare.md"
