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
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home --shell /usr/sbin/nologin weir
COPY --from=build /src/target/release/weir /src/target/release/weir-origin /usr/local/bin/
WORKDIR /app
COPY conf/ /app/conf/
USER weir
EXPOSE 8080
# weir stops gracefully on SIGTERM, which is what `docker stop` sends.
ENTRYPOINT ["weir"]
CMD ["-c", "conf/docker.yaml"]
