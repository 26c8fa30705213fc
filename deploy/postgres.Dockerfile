# PostgreSQL for deploy/compose.yaml, from Debian's packages only (no registry image). It
# listens on a unix socket only, in a volume shared with the Baton servers (no network port, no
# password: the socket's folder is reachable only by the containers that mount it).
#   docker build -f deploy/postgres.Dockerfile --build-arg BASE=baton-debian:bookworm \
#     -t baton-postgres .
ARG BASE=debian:bookworm-slim
FROM ${BASE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql tini \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -o postgres -g postgres -m 0700 /var/lib/postgresql/data \
 && install -d -o postgres -g postgres -m 2775 /run/postgresql
COPY deploy/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint
USER postgres
VOLUME ["/var/lib/postgresql/data", "/run/postgresql"]
STOPSIGNAL SIGINT
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/postgres-entrypoint"]
