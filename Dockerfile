# The operator image used by charts/steward (runs as uid/gid 65532 with a
# read-only root filesystem; only /tmp and /var/lib/steward are written).
#
# Online, on any Debian-based Python >= 3.11 image with pip:
#   docker build -t steward:0.1.0 .
# Offline, on the locally made debootstrap Python base (no pip in it) with a
# wheelhouse - what `hack/image/build-image.sh --docker` does for you:
#   docker build --build-arg BASE=steward-test/python-base:<key> -t steward:0.1.0 <context>
# where <context>/hack/image/wheelhouse holds pip, the project's wheel and its
# dependencies. hack/image/build-image.sh (default mode) makes the same image
# without Docker, as an archive for `docker load` and `ctr images import`.
ARG BASE=python:3.11-slim
FROM ${BASE}

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STEWARD_STATE_DIR=/var/lib/steward \
    HOME=/tmp

WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
# hack/image always exists; hack/image/wheelhouse only in an offline context.
COPY hack/image /tmp/image-ctx
RUN set -eu; \
    wh=/tmp/image-ctx/wheelhouse; \
    if python3 -m pip --version >/dev/null 2>&1; then pip="python3 -m pip"; \
    else \
      whl=$(ls "$wh"/pip-*.whl 2>/dev/null | head -n1); \
      [ -n "$whl" ] || { echo "BASE has no pip and there is no $wh/pip-*.whl" >&2; exit 1; }; \
      pip="python3 $whl/pip"; \
    fi; \
    if [ -d "$wh" ]; then \
      $pip install --no-index --find-links "$wh" --break-system-packages steward-operator; \
    else \
      $pip install .; \
    fi; \
    python3 -m compileall -q /usr/local/lib/python3*/*-packages >/dev/null 2>&1 || true; \
    rm -rf /src /tmp/image-ctx; \
    groupadd --gid 65532 steward; \
    useradd --uid 65532 --gid 65532 --home-dir /var/lib/steward --create-home \
      --shell /usr/sbin/nologin steward

WORKDIR /var/lib/steward
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["steward"]
CMD ["run", "--liveness", "http://0.0.0.0:8080/healthz", "--metrics-port", "9090"]
