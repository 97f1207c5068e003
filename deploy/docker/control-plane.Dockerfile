# syntax=docker/dockerfile:1
#
# tero-control-plane: a static musl binary on a distroless base, running as
# the unprivileged user 65532, keeping its state under /var/lib/tero.
#
# Build from the repository root (the build context is the whole workspace;
# BuildKit reads control-plane.Dockerfile.dockerignore next to this file):
#
#   docker build -f deploy/docker/control-plane.Dockerfile -t ghcr.io/tero-dev/tero-control-plane:0.1.0 .
#
# Run (SQLite in a named volume; the generated admin token is written to
# /var/lib/tero/admin-token unless TERO_ADMIN_TOKEN is set):
#
#   docker run -p 7070:7070 -v tero-data:/var/lib/tero -e TERO_ADMIN_TOKEN=... ghcr.io/tero-dev/tero-control-plane:0.1.0

FROM rust:1.95-alpine AS builder

# gcc and musl-dev: the C parts of the dependency tree (ring, the bundled
# SQLite of sqlx) compile against musl. TLS is rustls + ring, so no OpenSSL;
# the .proto files are compiled by protox (pure Rust), so no protoc.
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
# /out/data becomes the data directory, owned by the runtime user.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=tero-control-plane-target,sharing=locked \
    cargo build --release --locked -p tero-control-plane \
 && install -D -m 0755 target/release/tero-control-plane /out/tero-control-plane \
 && if readelf -l /out/tero-control-plane | grep -q 'program interpreter'; then \
        echo 'tero-control-plane is dynamically linked' >&2; exit 1; \
    fi \
 && mkdir -p /out/data \
 && chown 65532:65532 /out/data \
 && chmod 0750 /out/data

# Pin by digest in production: gcr.io/distroless/static-debian12:nonroot@sha256:...
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="tero-control-plane" \
      org.opencontainers.image.description="Tero control plane: policy store, admin API, Sync and push streams for Edge fleets" \
      org.opencontainers.image.source="https://github.com/tero-dev/tero" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /out/tero-control-plane /usr/local/bin/tero-control-plane
COPY --from=builder --chown=65532:65532 /out/data /var/lib/tero

# SQLite database and generated admin token (unused with TERO_DATABASE_URL
# pointing at PostgreSQL and TERO_ADMIN_TOKEN set, but it must be writable).
ENV TERO_DATA_DIR=/var/lib/tero \
    TERO_LISTEN=0.0.0.0:7070
VOLUME ["/var/lib/tero"]

# nonroot:nonroot of the distroless image.
USER 65532:65532
# One port: gRPC (HTTP/2, h2c or TLS) and the JSON API (HTTP/1.1).
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/tero-control-plane"]
