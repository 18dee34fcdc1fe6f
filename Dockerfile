# rapport on a CUDA host: the same install steps as README.md, then migrate and serve.
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    RAPPORT_DATA_DIR=/data \
    HF_HOME=/models/hf

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential curl \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /srv/rapport
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY retrieval ./retrieval
COPY migrations ./migrations

RUN python3 -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/venv/bin/pip install --no-cache-dir -e '.[gpu]'
ENV PATH=/opt/venv/bin:$PATH

VOLUME ["/data", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s \
    CMD curl -fsS http://127.0.0.1:8000/readyz || exit 1

# `rapport serve` runs the migrations before it listens.
CMD ["rapport", "serve", "--host", "0.0.0.0", "--port", "8000"]
