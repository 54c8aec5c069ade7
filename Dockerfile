# syntax=docker/dockerfile:1
#
# loss-service image. Configured only through LOSS_SERVICE_* environment variables.
#
#   docker build -t loss-service:1.0.0 .                                      # CPU torch
#   docker build --build-arg TORCH_VARIANT=cuda -t loss-service:1.0.0-cuda .  # CUDA torch
#
# The CUDA variant needs no CUDA base image: PyTorch's CUDA wheels bring the CUDA runtime,
# cuBLAS and cuDNN as nvidia-* packages; the host only provides the driver (run with --gpus).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

# cpu | cuda
ARG TORCH_VARIANT=cpu
# Which of PyTorch's CUDA wheel indexes the cuda variant uses (cu126, cu128, ...).
ARG TORCH_CUDA=cu128
# Keep equal to the pin in constraints.txt (step 2 checks the installed torch against it).
ARG TORCH_VERSION=2.13.0

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src

# 1. torch alone, from PyTorch's own index for the variant: the largest layer, rebuilt only
#    when the variant or the version changes.
RUN case "${TORCH_VARIANT}" in \
        cpu)  index=https://download.pytorch.org/whl/cpu ;; \
        cuda) index="https://download.pytorch.org/whl/${TORCH_CUDA}" ;; \
        *)    echo "TORCH_VARIANT must be cpu or cuda, not '${TORCH_VARIANT}'" >&2; exit 1 ;; \
    esac \
    && pip install --no-cache-dir --index-url "${index}" "torch==${TORCH_VERSION}"

# 2. The project's other dependencies, read from pyproject.toml, so that editing the source
#    does not reinstall them. constraints.txt pins torch==2.13.0, which the installed
#    2.13.0+cpu / 2.13.0+cu128 satisfies: pip keeps it instead of fetching PyPI's build.
COPY pyproject.toml constraints.txt ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > /tmp/requirements.txt \
    && pip install --no-cache-dir -c constraints.txt -r /tmp/requirements.txt

# 3. The project itself (not editable: the runtime stage gets no source tree).
COPY README.md ./
COPY service ./service
#    The last lines fail the build if anything replaced the torch build chosen in step 1.
RUN pip install --no-cache-dir --no-deps . \
    && pip check \
    && if [ "${TORCH_VARIANT}" = cpu ]; then local_tag=cpu; else local_tag="${TORCH_CUDA}"; fi \
    && python -c "import sys, torch; v = torch.__version__; sys.exit(None if v == '${TORCH_VERSION}+${local_tag}' else 'unexpected torch ' + v)"

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="loss-service" \
      org.opencontainers.image.description="REST microservice that evaluates PyTorch loss functions" \
      org.opencontainers.image.version="1.0.0" \
      io.loss-service.torch-variant="${TORCH_VARIANT}"

# A fixed numeric uid/gid, so that Kubernetes' runAsNonRoot can check it without a passwd lookup.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    LOSS_SERVICE_HOST=0.0.0.0 \
    LOSS_SERVICE_PORT=8000

WORKDIR /tmp
USER 10001:10001
EXPOSE 8000

# Readiness, not liveness: /readyz is 503 until the compute worker answers and while draining,
# so Docker (and compose's depends_on: service_healthy) only count a replica that can serve.
# Python's urllib, already in the image, instead of curl: nothing extra to install or patch.
# Any exception (connection refused, HTTP 503, timeout) exits 1 = unhealthy.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('LOSS_SERVICE_PORT', '8000') + '/readyz', timeout=4)"]

# Exec form: python is PID 1 and receives SIGTERM itself; uvicorn handles it by closing the
# listener and finishing in-flight requests before the process exits.
ENTRYPOINT ["python", "-m", "service"]
