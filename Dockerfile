# Palisade's container image: one statically linked binary on an empty base, run as a non-root
# user. No shell, no package manager, no libc: nothing in the image but /usr/local/bin/palisade.
#
#   docker build -t palisade .
#       compiles in the builder stage (default target).
#   docker build --target prebuilt -f Dockerfile -t palisade DIR
#       packages DIR/palisade, a binary built by `scripts/build-image --binary-only DIR/palisade`;
#       the builder stage is not used, so no base image is pulled. CI does this with buildah
#       (scripts/build-image), without a container engine.

# Keep in step with rust-version in Cargo.toml (scripts/check-image compares them).
ARG RUST_VERSION=1.89

FROM rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY scripts/build-image ./scripts/build-image
# The same build command as CI's (static glibc binary, `image` profile); the caches only speed up
# rebuilds and are not part of any layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    scripts/build-image --binary-only /palisade

# What the image says about itself; metadata only, no files.
FROM scratch AS base
# Keep in step with version in Cargo.toml (scripts/check-image compares them).
ARG VERSION=0.1.0
ARG REVISION=unknown
# Neutral by default; a release build may pass the repository's address.
ARG SOURCE=palisade
LABEL org.opencontainers.image.title="palisade" \
      org.opencontainers.image.description="Kubernetes security operator: defense in depth as a controller" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="${SOURCE}"
# 65532: the conventional "nonroot" UID/GID of distroless images; no passwd file is needed.
USER 65532:65532
# `palisade run` by default; arguments replace CMD, so a Deployment's `args: [run, ...]` or
# `docker run IMAGE audit -` choose the subcommand.
ENTRYPOINT ["/usr/local/bin/palisade"]
CMD ["run"]

# A binary built outside (the build context is a directory holding just `palisade`).
FROM base AS prebuilt
COPY palisade /usr/local/bin/palisade

# Default: the binary from the builder stage.
FROM base AS image
COPY --from=builder /palisade /usr/local/bin/palisade
