# zerohop, CPU build: `docker build -t zerohop .`
# Run:  docker run -p 8935:8935 -p 9935:9935 -v zerohop-data:/var/lib/zerohop zerohop
# The data volume keeps the node's TLS identity (its fingerprint is what clients pin).
FROM rust:1-bookworm AS build
# nasm: OpenH264's assembly (2-2.8x faster encode).
RUN apt-get update && apt-get install -y --no-install-recommends nasm && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin zerohop && strip target/release/zerohop

FROM debian:bookworm-slim
# x264 is GPL-2.0+ and left out unless asked for: `docker build --build-arg WITH_X264=1 ...`
# installs libx264-164, which zerohop then loads at run time (--cpu-encoder auto takes it; the
# image and every process that loads x264 are then under the GPL). Without it: OpenH264.
ARG WITH_X264=0
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl \
    $(if [ "$WITH_X264" = 1 ]; then echo libx264-164; fi) \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/zerohop --create-home zerohop
COPY --from=build /src/target/release/zerohop /usr/local/bin/zerohop
USER zerohop:zerohop
WORKDIR /var/lib/zerohop
VOLUME ["/var/lib/zerohop"]
# 8935: the service port (TLS); 9935: plain-HTTP /metrics, /healthz and /readyz.
EXPOSE 8935 9935
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD curl -fsS -o /dev/null http://127.0.0.1:9935/healthz || exit 1
ENTRYPOINT ["zerohop"]
CMD ["combined", "--service-addr", "0.0.0.0:8935", "--data-dir", "/var/lib/zerohop", "--metrics-addr", "0.0.0.0:9935"]
