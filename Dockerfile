# syntax=docker/dockerfile:1
# Vigil: build with the Rust toolchain, run on a slim Debian as a non-root user.
#   docker build -t vigil .
#   docker run --rm -e VIGIL_DATABASE_URL=... -e VIGIL_ADMIN_TOKEN=... -e VIGIL_REDACTION_KEY=... vigil migrate
#   docker run --rm -p 8080:8080 -e ... vigil            # serve
# docker-compose.yml runs it with PostgreSQL and OpenBao.

FROM rust:1-bookworm AS builder
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
 && useradd --system --create-home --home-dir /home/vigil --shell /usr/sbin/nologin vigil
COPY --from=builder /usr/local/bin/vigil /usr/local/bin/vigil
WORKDIR /app
COPY --from=builder /src/migrations ./migrations
COPY --from=builder /src/baselines ./baselines
RUN chown -R vigil:vigil /app
USER vigil
ENV VIGIL_LISTEN=0.0.0.0:8080 \
    VIGIL_BASELINES_DIR=/app/baselines
EXPOSE 8080
ENTRYPOINT ["vigil"]
CMD ["serve"]
