# The operator image used by charts/steward. Build: docker build -t steward:0.1.0 .
# BASE may name any Debian-based Python >= 3.11 image with pip.
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STEWARD_STATE_DIR=/var/lib/steward

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
RUN python3 -m pip install . && rm -rf /src \
    && useradd --uid 10001 --user-group --home-dir /var/lib/steward --create-home steward

WORKDIR /var/lib/steward
USER 10001
EXPOSE 8080 9090
ENTRYPOINT ["steward"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
