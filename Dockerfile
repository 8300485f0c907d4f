# openremix on a CPU: the API, workers or both (`serve`), on the embedded style engine.
#   docker build -t openremix .
#   docker run -p 8000:8000 -v openremix-data:/data openremix
# The many-machines layout (PostgreSQL, S3-compatible storage, API replicas, workers) is
# compose.yaml; docs/deploy.md explains both. Dockerfile.cuda is the GPU variant.
FROM python:3.11-slim

# Extras to install (see pyproject.toml): PostgreSQL and S3 for the many-machines layout.
ARG EXTRAS=postgres,s3

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/openremix/bin:$PATH \
    OPENREMIX_HOST=0.0.0.0 \
    OPENREMIX_PORT=8000 \
    OPENREMIX_DATA_DIR=/data \
    HF_HOME=/models

WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY scripts/install.sh scripts/
COPY src src
# The same install script CI runs (scripts/test.sh), into its own virtual environment.
RUN bash scripts/install.sh /opt/openremix "$EXTRAS" \
    && useradd --system --uid 10001 --user-group --create-home openremix \
    && mkdir -p /data /models \
    && chown openremix:openremix /data /models

USER 10001:10001
WORKDIR /home/openremix
# /data: the SQLite store, outputs and keys of the embedded default; /models: the model cache
# (HF_HOME) of `openremix models pull` and the diffusion engine.
VOLUME ["/data", "/models"]
EXPOSE 8000
# Ready means the job store answers and a worker has its model (503 until then).
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('OPENREMIX_PORT', '8000'), timeout=4)"]
CMD ["openremix", "serve"]
