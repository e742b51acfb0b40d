# syntax=docker/dockerfile:1
# Build: docker build -t vigil .   Final image: distroless/static-like cc base, non-root, no shell.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY bench ./bench
RUN cargo build --release --locked && cp target/release/vigil /vigil

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /vigil /usr/local/bin/vigil
USER 65532:65532
EXPOSE 9476
ENTRYPOINT ["vigil"]
CMD ["run", "--config", "/etc/vigil/vigil.toml"]
