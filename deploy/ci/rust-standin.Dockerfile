# Stand-in for the official Rust builder image on machines without an image registry, built by
# docker-up.sh from this machine's own toolchain. Same layout as the official image:
# RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo, cargo and rustc on PATH.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Extra certificate authorities of the build machine (its package traffic goes through them).
COPY ca-certificates/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup \
    CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:$PATH
COPY toolchain/ /usr/local/rustup/toolchains/stable-x86_64-unknown-linux-gnu/
COPY rustup /usr/local/cargo/bin/rustup
RUN set -eu; cd /usr/local/cargo/bin; \
    for p in cargo rustc rustdoc rust-gdb rust-lldb cargo-clippy cargo-fmt clippy-driver rustfmt; do ln -s rustup "$p"; done; \
    printf 'version = "12"\ndefault_toolchain = "stable-x86_64-unknown-linux-gnu"\nprofile = "minimal"\n' > /usr/local/rustup/settings.toml; \
    cargo --version; rustc --version
