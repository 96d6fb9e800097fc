# syntax=docker/dockerfile:1
# yuqing: one image for every service. The command picks the service:
#   docker run IMAGE worker ingest|desk|scoring|escalation|notifier    (default: worker ingest)
#   docker run IMAGE topics create
# Build from the repository root: docker build -t yuqing .

# ---- builder: a self-contained virtualenv at /opt/venv ------------------------------------------------------------
FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

# A compiler for any dependency that has no wheel for this platform (most ship manylinux wheels).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): the build metadata, the README it names, the packages.
COPY pyproject.toml README.md ./
COPY services ./services
COPY schemas ./schemas
RUN pip wheel --no-deps --wheel-dir /wheels . \
    && pip install /wheels/*.whl \
    && python -m compileall -q /opt/venv \
    && yuqing --help > /dev/null

# ---- runtime: the venv and a non-root user, nothing else --------------------------------------------------------
FROM python:3.11-slim AS runtime

LABEL org.opencontainers.image.title="yuqing" \
      org.opencontainers.image.description="Early warning for online opinion crises on Kafka" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 yuqing \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/yuqing --shell /usr/sbin/nologin yuqing \
    && mkdir -p /var/lib/yuqing /etc/yuqing \
    && chown 10001:10001 /var/lib/yuqing

COPY --from=builder /opt/venv /opt/venv

# Inside a container the services must listen on every interface (their defaults are 127.0.0.1).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    YUQING_API_HOST=0.0.0.0 \
    YUQING_API_PORT=8000 \
    YUQING_DESK_HOST=0.0.0.0 \
    YUQING_DESK_PORT=8001 \
    YUQING_WEB_HOST=0.0.0.0 \
    YUQING_WEB_PORT=6066 \
    YUQING_DATA_DIR=/var/lib/yuqing

WORKDIR /var/lib/yuqing
# Numeric, so that Kubernetes' runAsNonRoot can check it.
USER 10001:10001

# 8000: ingest API; 8001: the desk (console, operator API, ack links); 6066: a stream worker's /healthz and /metrics.
EXPOSE 8000 8001 6066

# Ingest answers on YUQING_API_PORT, the desk on YUQING_DESK_PORT, a stream worker on YUQING_WEB_PORT: healthy when
# any of them says /healthz is OK.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u\nfor port in (os.environ.get('YUQING_API_PORT', '8000'), os.environ.get('YUQING_DESK_PORT', '8001'), os.environ.get('YUQING_WEB_PORT', '6066')):\n    try:\n        u.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=3)\n        sys.exit(0)\n    except OSError:\n        pass\nsys.exit(1)"]

ENTRYPOINT ["yuqing"]
CMD ["worker", "ingest"]
