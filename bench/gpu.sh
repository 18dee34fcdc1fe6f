#!/usr/bin/env bash
# The encoder benchmark on a CUDA machine, unchanged: raw vs service images/s for ViT-B-32
# and ViT-L-14 (random weights: speed only; fp16 and pinned memory on CUDA). Meant to finish
# in under 5 minutes on one modern GPU once the packages are there.
#
#   bash bench/gpu.sh                          # uses .venv, creating it (needs a package index)
#   PYTHON=python3 bash bench/gpu.sh           # a Python that already has CUDA torch
#   RAPPORT_WHEELS=wheels/ PYTHON=python3 bash bench/gpu.sh
#       # an offline machine: the project's other packages as wheels, installed beside torch.
#       # Make the folder where there is network, for that machine's Python, e.g.:
#       # pip download --no-deps --only-binary=:all: --python-version 3.12 \
#       #   --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d wheels \
#       #   open_clip_torch ftfy wcwidth fastapi starlette opentelemetry-api pydantic \
#       #   pydantic-core pydantic-settings python-dotenv annotated-types annotated-doc \
#       #   typing-inspection typing-extensions sqlalchemy alembic mako uvicorn httptools \
#       #   python-multipart faiss-cpu anyio sniffio
#
# RAPPORT_TEST_DATASET names the photo folder when ../shared/datasets is not beside the repo;
# GPU_BENCH_MODELS and GPU_BENCH_ARGS shrink the run (a smoke test on a CPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install --quiet -e '.[cpu]'
  fi
  python=.venv/bin/python
fi
if [ -n "${RAPPORT_WHEELS:-}" ]; then
  site=$(mktemp -d)
  "$python" -m pip install --quiet --no-index --no-deps --no-compile --target "$site" "$RAPPORT_WHEELS"/*.whl
  export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"
"$python" -c 'import torch, open_clip, faiss, app.main, app.cli; print("torch", torch.__version__, "cuda", torch.cuda.is_available(), "open_clip", open_clip.__version__)'
for model in ${GPU_BENCH_MODELS:-ViT-B-32 ViT-L-14}; do
  # shellcheck disable=SC2086
  "$python" bench/encoder_throughput.py --model "$model" \
    ${GPU_BENCH_ARGS:---device cuda --photos 256 --batches 32,64,128 --clients 1,8,32 --repeats 2}
done
