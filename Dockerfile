# raftkv node image. Every setting is an environment variable (README, "Configuration"; `raftkv serve --help`);
# docker-compose.yml runs a 3-node cluster from it.
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY raftkv ./raftkv
RUN pip install --no-cache-dir . && rm -rf /src

# Listen on all interfaces inside the container; ADVERTISE_ADDR tells peers
# the name to dial (the compose service name).
ENV RAFT_NODE_ID=n1 \
    HTTP_SERVER_PORT=8000 \
    RAFT_SERVER_PORT=9000 \
    RAFT_VOLUME_DIR=/data \
    BIND_ADDR=0.0.0.0 \
    LOG_LEVEL=INFO \
    LOG_FORMAT=hclog
VOLUME /data
EXPOSE 8000 9000
WORKDIR /data
STOPSIGNAL SIGTERM
CMD ["raftkv", "serve"]
