# weir and the demo origin, built from source.
#   docker build -t weir:dev .
#   docker run --rm weir:dev --version
# The image runs `weir -c conf/docker.yaml` from /app; mount your own file over
# /app/conf/weir.yaml and pass `-c conf/weir.yaml` to use it.

FROM rust:1-bookworm AS build
# cmake builds the zlib-ng that Pingora's compression links.
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p weir -p weir-origin

FROM debian:bookworm-slim
# /var/lib/weir (server.state_dir) and /var/tmp/weir (the cache of conf/docker.yaml) belong to
# the weir user; the named volumes of docker-compose.yml mounted there take this ownership.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin weir \
    && mkdir -p /var/lib/weir /var/tmp/weir \
    && chown weir:weir /var/lib/weir /var/tmp/weir
COPY --from=build /src/target/release/weir /src/target/release/weir-origin /usr/local/bin/
WORKDIR /app
COPY conf/ /app/conf/
USER weir
# 8080: the proxy; 9901: the admin API of conf/docker.yaml.
EXPOSE 8080 9901
# weir stops gracefully on SIGTERM, which is what `docker stop` sends.
ENTRYPOINT ["weir"]
CMD ["-c", "conf/docker.yaml"]
