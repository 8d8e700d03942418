# syntax=docker/dockerfile:1
# ws-gateway image: a release build on rust:1.95 (bookworm), run on debian:bookworm-slim as a
# non-root user. The binary runs the sea-orm migrations itself at startup (DATABASE_URL), so no
# separate migration step is needed; `cargo run -p migration -- up|down` exists for operators.

############################ builder ############################
FROM rust:1.95-slim-bookworm AS builder
WORKDIR /build
# The slim image has gcc but not make, which tikv-jemalloc-sys needs to build jemalloc.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends make; \
    rm -rf /var/lib/apt/lists/*

# Cargo validates every declared target path, even for `--bin ws-gateway`; this writes an empty
# `fn main` for each [[bench]] / [[test]] of Cargo.toml whose file is absent (benches and tests
# are not part of the image).
RUN cat > /usr/local/bin/stub-targets <<'SH'
#!/bin/sh
# Prints "<path>" for every [[bench]] / [[test]] target (its `path`, else the default path).
set -eu
awk '
  function flush() { if (kind != "" && name != "") print (path != "" ? path : dir "/" name ".rs") }
  /^\[/ { flush(); kind = ""; name = ""; path = "" }
  $0 == "[[bench]]" { kind = "bench"; dir = "benches"; next }
  $0 == "[[test]]"  { kind = "test";  dir = "tests";   next }
  kind != "" && /^name *=/ { v = $0; gsub(/^name *= *"|".*$/, "", v); name = v }
  kind != "" && /^path *=/ { v = $0; gsub(/^path *= *"|".*$/, "", v); path = v }
  END { flush() }
' Cargo.toml | while read -r target; do
  [ -e "$target" ] || { mkdir -p "$(dirname "$target")"; echo 'fn main() {}' > "$target"; }
done
SH
RUN chmod +x /usr/local/bin/stub-targets

# 1. Dependencies only: the manifests plus stub sources, so this layer is rebuilt only when
#    Cargo.toml / Cargo.lock change, not on every source edit.
COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/Cargo.toml
# The dev-only fake Bybit (a workspace member and dev-dependency, never built for the image):
# its manifest, and an empty lib.rs that stays so the workspace resolves in the next layer too.
COPY fake-bybit/Cargo.toml fake-bybit/Cargo.toml
# amqprs with the coalescing writer ([patch.crates-io] in Cargo.toml; vendor/amqprs/PATCHES.md).
COPY vendor vendor
RUN set -eux; \
    mkdir -p src migration/src fake-bybit/src; \
    echo 'fn main() {}' > src/main.rs; \
    touch src/lib.rs migration/src/lib.rs fake-bybit/src/lib.rs; \
    echo 'fn main() {}' > migration/src/main.rs; \
    stub-targets; \
    cargo build --release --locked --bin ws-gateway; \
    rm -rf src migration/src benches tests

# 2. The real sources. `touch` makes cargo see them as newer than the stub build.
COPY src src
COPY migration/src migration/src
RUN set -eux; \
    touch src/main.rs src/lib.rs migration/src/lib.rs migration/src/main.rs; \
    stub-targets; \
    cargo build --release --locked --bin ws-gateway; \
    cp target/release/ws-gateway /usr/local/bin/ws-gateway

############################ test ###############################
# `docker compose --profile test run --rm test`: the whole tree (tests, fixtures, compose and
# Grafana files) on top of the builder's toolchain and dependency cache. Not part of the runtime
# image (BuildKit skips this stage unless it is the target).
FROM builder AS test
COPY . .
ENV CARGO_TERM_COLOR=always
CMD ["cargo", "test", "--locked", "--", "--test-threads=2"]

############################ runtime ############################
FROM debian:bookworm-slim AS runtime
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates curl; \
    rm -rf /var/lib/apt/lists/*; \
    groupadd --system --gid 10001 gateway; \
    useradd --system --uid 10001 --gid gateway --home-dir /app --shell /usr/sbin/nologin gateway; \
    mkdir -p /app/data; \
    chown -R gateway:gateway /app

WORKDIR /app
COPY --from=builder /usr/local/bin/ws-gateway /usr/local/bin/ws-gateway
COPY --chown=gateway:gateway pipelines pipelines
# The spool (unconfirmed private events) and the unwritten balance rows live on the data
# volume, so a recreated container keeps them.
RUN sed -i 's|^spool_dir = .*|spool_dir = "/app/data/spool"|' pipelines/default.toml; \
    grep -qx 'spool_dir = "/app/data/spool"' pipelines/default.toml; \
    chown gateway:gateway pipelines/default.toml

USER gateway
# Defaults suited to a container; docker-compose.yml / .env override them.
ENV WS_GATEWAY_HOST=0.0.0.0 \
    WS_GATEWAY_PORT=4400 \
    WS_GATEWAY_PIPELINE=/app/pipelines/default.toml \
    DATABASE_URL=sqlite:///app/data/ws-gateway.db?mode=rwc
EXPOSE 4400
VOLUME ["/app/data"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD curl -fsS http://127.0.0.1:4400/health || exit 1
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ws-gateway"]
