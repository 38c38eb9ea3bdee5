# fediprobe as a small, static, non-root image.
#
#   docker build -t ghcr.io/your-org/fediprobe:0.1.0 .
#   docker run --rm ghcr.io/your-org/fediprobe:0.1.0 --help
#
# Build: a static binary against musl (Alpine's native target), so the image
# needs no libc. Run: distroless "static" (CA certificates, tzdata, /etc/passwd
# with `nonroot`, no shell), as user 65532, the same the Kubernetes manifests
# under deploy/ require (runAsNonRoot, read-only root filesystem).
#
# Built without the default `sandbox` feature: the image carries no simulated
# Mastodon and has no `demo` or `sandbox` command (tests/lean_build.rs checks it).

FROM rust:1.88-alpine AS build
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
# The whole tree (less what .dockerignore leaves out), so that every target
# Cargo.toml declares (benches, tests) is there for the manifest to load.
COPY . .
RUN cargo build --release --locked --no-default-features --bin fediprobe \
 && strip target/release/fediprobe

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /src/target/release/fediprobe /usr/local/bin/fediprobe
# The bundled journeys, as a starting point; the
# Kubernetes manifests mount their own from a ConfigMap.
COPY journeys /usr/share/fediprobe/journeys
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/fediprobe"]
CMD ["--help"]
