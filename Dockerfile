# syntax=docker/dockerfile:1.7
#
# One image for every wacenter binary:
#   wacenter-ingress, wacenter-forwarder, wacenter-reply, wacenter-callback and the `wacenter` CLI.
# Pick the process with the container command (`docker run wacenter:latest wacenter-forwarder`);
# the default command prints the CLI's help.
#
#   docker build -t wacenter:latest .

############################
# Build
############################
FROM rust:1-bookworm AS builder
WORKDIR /src

# Only what the build reads: the workspace manifests, the crates and the JSON Schemas that
# wacenter-proto embeds (include_str! of proto/schemas/*.json).
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY proto ./proto

# The cargo registry and the target directory live in BuildKit cache mounts, so a rebuild after a
# source change recompiles only the workspace crates, not every dependency. The cache mount is not
# part of the image: the binaries are copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --workspace --locked \
 && mkdir -p /out \
 && for bin in wacenter wacenter-ingress wacenter-forwarder wacenter-reply wacenter-callback; do \
      cp "target/release/$bin" /out/; \
    done

############################
# Runtime
############################
FROM debian:bookworm-slim AS runtime

# CA certificates for HTTPS to OtomaX, GOWA and Meta's Graph API; nothing else is needed.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 wacenter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin wacenter

COPY --from=builder /out/ /usr/local/bin/

# Containers listen on every interface; the settings' defaults are the same ports.
ENV INGRESS_PORT=3001 \
    FORWARDER_PORT=9091 \
    REPLY_PORT=9092 \
    APP_PORT=3000

# ingress (webhooks), callback + REST API, forwarder ops, reply ops.
# Every port also serves /healthz, /readyz and /metrics.
EXPOSE 3001 3000 9091 9092

USER 10001:10001

# The services stop cleanly on SIGTERM: in-flight messages finish and are acknowledged first.
STOPSIGNAL SIGTERM
CMD ["wacenter", "--help"]
