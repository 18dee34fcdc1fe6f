# rapport's image. CPU-only by default; for a CUDA host:
#   docker build --build-arg VARIANT=gpu -t rapport:gpu .
# One CUDA line (12.8): VARIANT picks the base image, the torch wheel (PyTorch's cu128
# index) and the faiss wheel (faiss-gpu-cu12, the `gpu` extra) together, never one alone.
# The install step is the README's, run in the image's working directory.
ARG VARIANT=cpu
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM python:3.11-slim-bookworm AS base-cpu
# Torch's CPU-only wheel: the default one on PyPI carries CUDA libraries (gigabytes).
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

FROM ${CUDA_IMAGE} AS base-gpu
ENV TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

FROM base-${VARIANT}
ARG VARIANT
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    RAPPORT_DATA_DIR=/data \
    HF_HOME=/models/hf

WORKDIR /srv/rapport
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY retrieval ./retrieval

# README, "The two commands": the same venv and install; the extra is the variant.
RUN python3 -m venv .venv && PIP_EXTRA_INDEX_URL=$TORCH_INDEX_URL .venv/bin/pip install -e ".[${VARIANT}]" \
    && rm -rf /root/.cache/pip
ENV PATH=/srv/rapport/.venv/bin:$PATH

RUN useradd --system --uid 10001 --home-dir /data rapport \
    && mkdir -p /data /models \
    && chown rapport /data /models
USER rapport

VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]

# Migrates, then serves. With several replicas, run `rapport db upgrade` once beforehand
# (compose's `migrate`, the Kubernetes Job) and start the replicas with --no-migrate.
CMD ["rapport", "serve", "--host", "0.0.0.0", "--port", "8000"]
