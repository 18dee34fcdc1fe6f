#!/usr/bin/env bash
# The encoder benchmark on a CUDA machine, unchanged: raw vs service images/s for ViT-B-32
# and ViT-L-14 (random weights: speed only; fp16 and pinned memory on CUDA). Meant to finish
# in under 5 minutes on one modern GPU, the install included when a wheel cache is warm.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet -e '.[cpu]'
fi
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
for model in ViT-B-32 ViT-L-14; do
  .venv/bin/python bench/encoder_throughput.py --model "$model" --device cuda \
    --photos 256 --batches 32,64,128 --clients 1,8,32 --repeats 2
done
