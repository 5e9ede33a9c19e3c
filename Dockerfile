# watchfire: multi-stage build, small non-root runtime image.
#   docker build -t watchfire:local .
#   docker run -p 127.0.0.1:9115:9115 watchfire:local   # probes the config in /etc/watchfire/
# Publish the port on the host's loopback as above unless Prometheus scrapes from elsewhere; then
# mount a web config (TLS, basic_auth_users) and add --web.config.file.
# The same image runs the simulated gateway: docker run watchfire:local sim --listen 0.0.0.0:8000

FROM rust:1.95-bookworm AS build
WORKDIR /src
# rust-toolchain.toml is left out on purpose: the image's 1.95 toolchain is the pinned one, and
# the file would make rustup download the rustfmt/clippy components the build does not need.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
RUN cargo build --release --locked --bin watchfire \
    && cp target/release/watchfire /usr/local/bin/watchfire

# glibc + libgcc only (rustls, no OpenSSL); runs as uid 65532 "nonroot".
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/watchfire /usr/local/bin/watchfire
COPY probes/ /etc/watchfire/
USER 65532:65532
EXPOSE 9115
# The runbook's health check timing; `watchfire probe` exits 0 on success (no curl in the image).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/watchfire", "probe", "--timeout", "4s", "http://127.0.0.1:9115/-/healthy"]
ENTRYPOINT ["/usr/local/bin/watchfire"]
# 0.0.0.0 inside the container: a published port reaches the container's own interface only. Who
# can reach it is decided where it is published (`-p 127.0.0.1:9115:9115`).
CMD ["run", "--web.listen-address", "0.0.0.0:9115", "--config", "/etc/watchfire/"]
