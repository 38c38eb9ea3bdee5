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
#
# Base images by digest. A tag moves (a rebuilt `rust:1.89-alpine` is another
# image); a digest does not. The digests below are the ones published for these
# tags as recorded in public build logs and Dockerfiles in 2026 (this file was
# written without registry access, so they were not resolved here). To move to
# newer images, look the digests up and change both lines (or pass them as build
# arguments):
#
#   crane digest rust:1.89-alpine
#   crane digest gcr.io/distroless/static-debian12:nonroot
#   docker build --build-arg RUST_IMAGE=rust:1.89-alpine@sha256:<digest> \
#                --build-arg RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:<digest> …
ARG RUST_IMAGE=rust:1.89-alpine@sha256:4b800f2e72e04be908e5f634c504c741bd943b763d1d8ad7b096cc340e1b5b46
ARG RUNTIME_IMAGE=gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab

FROM ${RUST_IMAGE} AS build
RUN apk add --no-cache musl-dev gcc
WORKDIR /src
# Only what the build needs, by name: never `COPY . .`, which would put whatever
# lies in the folder (a token file, .git) into the build context and its cache.
COPY Cargo.toml Cargo.lock ./
COPY src src
# The bundled journeys are compiled into the binary (`include_str!`).
COPY journeys journeys
# Cargo.toml declares benches, and cargo refuses a manifest whose declared
# targets are missing: empty stand-ins, named from the manifest itself.
RUN mkdir benches \
 && for bench in $(sed -n '/^\[\[bench\]\]/,/^name/s/^name = "\(.*\)"/\1/p' Cargo.toml); do \
      echo 'fn main() {}' > "benches/$bench.rs"; \
    done
RUN cargo build --release --locked --no-default-features --bin fediprobe \
 && strip target/release/fediprobe

FROM ${RUNTIME_IMAGE}
COPY --from=build /src/target/release/fediprobe /usr/local/bin/fediprobe
# The bundled journeys, as a starting point; the
# Kubernetes manifests mount their own from a ConfigMap.
COPY journeys /usr/share/fediprobe/journeys
USER 65532:65532
EXPOSE 9464
ENTRYPOINT ["/usr/local/bin/fediprobe"]
CMD ["--help"]
