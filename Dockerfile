# syntax=docker/dockerfile:1
# Vigil: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t vigil .
#   docker run --rm -e VIGIL_DATABASE_URL=... -e VIGIL_ADMIN_TOKEN=... -e VIGIL_REDACTION_KEY=... vigil migrate
#   docker run --rm -p 8080:8080 -e ... vigil            # serve
# docker-compose.yml runs it with PostgreSQL and OpenBao.

# The toolchain of rust-toolchain.toml, exactly (change both together).
FROM rust:1.95.0-bookworm AS builder
WORKDIR /src
# sqlx: never reach for a database at build time (uses .sqlx/ if the crate has query! macros)
ENV SQLX_OFFLINE=true
COPY . .
RUN cargo build --release --locked \
 && cp target/release/vigil /usr/local/bin/vigil

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --user-group --create-home --home-dir /home/vigil --shell /usr/sbin/nologin vigil
COPY --from=builder /usr/local/bin/vigil /usr/local/bin/vigil
WORKDIR /app
COPY --from=builder /src/migrations ./migrations
COPY --from=builder /src/baselines ./baselines
RUN chown -R 65532:65532 /app
# Numeric, so a runtime that forbids root (runAsNonRoot) can verify it without reading /etc/passwd.
USER 65532:65532
ENV VIGIL_LISTEN=0.0.0.0:8080 \
    VIGIL_BASELINES_DIR=/app/baselines
EXPOSE 8080
# The slim image has no curl: the binary probes its own /healthz (2 s timeout, exit 0 or 1).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["vigil", "healthcheck", "--url", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["vigil"]
CMD ["serve"]
