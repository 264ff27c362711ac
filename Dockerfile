# raftkv node image. Every setting is an environment variable (README,
# "Configuration"; `raftkv serve --help`); docker-compose.yml runs a 3-node
# cluster from it, and README "Run it under Docker" walks through it.
#
# BASE_IMAGE must provide python3 (>= 3.11) with the venv module. The default
# is built locally from Debian's mirror by scripts/docker-base.sh, because no
# image registry may be reachable; with one, python:3.11-slim works as is:
#   docker build --build-arg BASE_IMAGE=python:3.11-slim -t raftkv .
ARG BASE_IMAGE=raftkv-base:bookworm

FROM ${BASE_IMAGE} AS build
# pip trusts the system CA store (where a proxy's CA goes), not its own copy.
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
WORKDIR /src
# Dependencies first, read from pyproject.toml alone, so that a change to the
# code reuses this layer instead of downloading every wheel again.
COPY pyproject.toml ./
RUN python3 -m venv /opt/raftkv \
 && python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt \
 && /opt/raftkv/bin/pip install -r requirements.txt "setuptools>=70.1"
COPY raftkv ./raftkv
# pyproject.toml names README.md as the long description; an empty one will
# do, and keeps an edit of the README from rebuilding the image.
RUN touch README.md \
 && /opt/raftkv/bin/pip install --no-deps --no-build-isolation . \
 && /opt/raftkv/bin/pip uninstall -y setuptools pip

FROM ${BASE_IMAGE}
# A fixed uid and gid so a bind-mounted data directory can be chowned to them
# (chown 10001:10001 DIR); a named volume takes /data's owner by itself.
RUN groupadd --system --gid 10001 raftkv \
 && useradd --system --uid 10001 --gid raftkv --home-dir /data --no-create-home raftkv \
 && mkdir -p /data && chown raftkv:raftkv /data

# No RAFT_NODE_ID here: every node sets its own (the node refuses to start
# without one). Listen on all interfaces inside the container; peers dial
# ADVERTISE_ADDR / HTTP_ADVERTISE_ADDR, which docker-compose.yml sets to the
# service names.
ENV PATH=/opt/raftkv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONDONTWRITEBYTECODE=1 \
    HTTP_SERVER_PORT=8000 \
    RAFT_SERVER_PORT=9000 \
    RAFT_VOLUME_DIR=/data \
    BIND_ADDR=0.0.0.0 \
    LOG_LEVEL=INFO \
    LOG_FORMAT=hclog
USER raftkv
WORKDIR /data
VOLUME /data
EXPOSE 8000 9000
# Healthy = ready: GET /readyz answers 200 once the node has a leader and has
# applied what that leader committed (docs/readiness-and-leaving.md). A node
# not yet in a cluster, or cut off from its quorum, is unhealthy, which
# Docker only reports. Python's urllib, because the image carries no curl.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request as u; h = os.environ.get('BIND_ADDR', '0.0.0.0'); h = '127.0.0.1' if h in ('0.0.0.0', '::', '[::]', '*') else h; u.urlopen('http://%s:%s/readyz' % (h, os.environ.get('HTTP_SERVER_PORT', '8000')), timeout=2)"]
CMD ["raftkv", "serve"]
# Last, so that a change to the code rebuilds only this layer of the runtime
# stage (each layer costs a copy of the whole tree on the vfs storage driver).
COPY --from=build /opt/raftkv /opt/raftkv
