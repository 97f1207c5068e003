# syntax=docker/dockerfile:1
#
# tero-edge, the Prometheus scrape-filtering sidecar: a static musl binary on
# a distroless base, running as the unprivileged user 65532.
#
# Build from the repository root (the build context is the whole workspace;
# BuildKit reads edge.Dockerfile.dockerignore next to this file):
#
#   docker build -f deploy/docker/edge.Dockerfile -t ghcr.io/tero-dev/tero-edge:0.1.0 .
#
# Multi-arch: `docker buildx build --platform linux/amd64,linux/arm64 ...`
# (the builder compiles natively for each platform; no --target needed).

FROM rust:1.95-alpine AS builder

# gcc and musl-dev: the C parts of the dependency tree (ring, zstd) compile
# against musl. TLS is rustls + ring, so no OpenSSL; the .proto files are
# compiled by protox (pure Rust), so no protoc.
# hadolint ignore=DL3018
RUN apk add --no-cache gcc musl-dev

# A failing command anywhere in a pipe fails the RUN (busybox ash).
SHELL ["/bin/ash", "-eo", "pipefail", "-c"]

WORKDIR /src
COPY . .

# Release profile of the workspace, minus debug info, symbols stripped.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# The cache mounts keep the crates.io downloads and the target directory
# between builds; the binary is copied out of the mount to /out. The build
# fails if the result is not statically linked (distroless/static has no libc).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=tero-edge-target,sharing=locked \
    cargo build --release --locked -p tero-edge \
 && install -D -m 0755 target/release/tero-edge /out/tero-edge \
 && if readelf -l /out/tero-edge | grep -q 'program interpreter'; then \
        echo 'tero-edge is dynamically linked' >&2; exit 1; \
    fi

# Pin by digest in production: gcr.io/distroless/static-debian12:nonroot@sha256:...
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tero-edge" \
      org.opencontainers.image.description="Tero Edge: the Prometheus scrape-filtering sidecar" \
      org.opencontainers.image.source="https://github.com/tero-dev/tero" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /out/tero-edge /usr/local/bin/tero-edge

# nonroot:nonroot of the distroless image.
USER 65532:65532
# Prometheus scrapes the Edge here (listen_port in the config).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/tero-edge"]
# The config file; mount it (a ConfigMap) at /etc/tero/config.json.
CMD ["/etc/tero/config.json"]
