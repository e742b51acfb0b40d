# syntax=docker/dockerfile:1
# vigil's image: docker build -t vigil .
#
# Stage 1 builds with exactly the command CI runs (.ci/ship.sh): cargo build --release --locked.
# Stage 2 is distroless "cc" (glibc, libgcc, CA certificates, tzdata; no shell, no package
# manager), running as the nonroot user 65532. The binary is dynamically linked against glibc,
# so the "static" or scratch images would not do; TLS roots are compiled into the binary
# (webpki-roots), the image's CA bundle serves only tools that might be added.
#
# Expected size (no Docker engine was available to measure it): the distroless cc-debian12 base
# is about 23 MB uncompressed, the stripped binary 7.8 MiB (bench/README.md), so about 32 MB
# uncompressed, about 13 MB compressed in a registry.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY bench ./bench
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked \
 && cp target/release/vigil /vigil

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /vigil /usr/local/bin/vigil
USER 65532:65532
EXPOSE 9476
ENTRYPOINT ["vigil"]
# With no configuration vigil runs the system check on 0.0.0.0:9476; the Deployment passes
# `run --config /etc/vigil/vigil.toml` (deploy/base/deployment.yaml).
CMD ["run"]
