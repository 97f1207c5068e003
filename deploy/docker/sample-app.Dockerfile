# syntax=docker/dockerfile:1
#
# The sample application of the Kubernetes example (base/example-app/):
# `tero sample-app`, the quickstart's application, serving /metrics with
# realistic metrics and planted waste (a debug family, a per-user counter).
# A static musl binary on a distroless base, as the Tero images.
#
# Build from the repository root (BuildKit reads
# sample-app.Dockerfile.dockerignore next to this file):
#
#   docker build -f deploy/docker/sample-app.Dockerfile -t ghcr.io/tero-dev/sample-app:0.1.0 .

FROM rust:1.95-alpine AS builder

# hadolint ignore=DL3018
RUN apk add --no-cache gcc musl-dev

SHELL ["/bin/ash", "-eo", "pipefail", "-c"]

WORKDIR /src
COPY . .

ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_TERM_COLOR=never

# `tero` embeds examples/quickstart/rules.yaml, so examples/ is in the
# build context of this image (see its .dockerignore).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,id=tero-cli-target,sharing=locked \
    cargo build --release --locked -p tero-cli \
 && install -D -m 0755 target/release/tero /out/tero \
 && if readelf -l /out/tero | grep -q 'program interpreter'; then \
        echo 'tero is dynamically linked' >&2; exit 1; \
    fi

# Pin by digest in production: gcr.io/distroless/static-debian12:nonroot@sha256:...
FROM gcr.io/distroless/static-debian12:nonroot

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="sample-app" \
      org.opencontainers.image.description="Tero's sample application: /metrics with planted waste" \
      org.opencontainers.image.source="https://github.com/tero-dev/tero" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /out/tero /usr/local/bin/tero

USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tero", "sample-app"]
# In a pod with the tero-edge sidecar, pass --listen 127.0.0.1:8080 so that
# only the Edge reads the unfiltered metrics.
CMD ["--listen", "0.0.0.0:8080"]
