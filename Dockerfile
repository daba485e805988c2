# Switchyard: one static-ish binary on a slim base.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY server ./server
COPY tests ./tests
RUN cargo build --release -p switchyard --bin switchyard

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/switchyard /usr/local/bin/switchyard
COPY config /etc/switchyard
USER nobody
EXPOSE 8080
# Without --config the built-in demo runs (mock models, no key). Mount a config and pass
# --config /etc/switchyard/switchyard.toml, with provider keys in the environment.
ENTRYPOINT ["switchyard", "serve", "--listen", "0.0.0.0:8080"]
