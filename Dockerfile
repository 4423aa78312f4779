# syntax=docker/dockerfile:1
# Multi-stage build: the `sluice` gateway and the `sluice-mock` upstream.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --workspace --bins \
 && cp target/release/sluice target/release/sluice-mock target/release/sluice-bench /usr/local/bin/

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 sluice
COPY --from=build /usr/local/bin/sluice /usr/local/bin/sluice-mock /usr/local/bin/sluice-bench /usr/local/bin/
COPY conf /etc/sluice
USER sluice
EXPOSE 8080 9901
ENTRYPOINT ["sluice"]
CMD ["--config", "/etc/sluice/sluice.yaml", "--listen", "0.0.0.0:8080", "--admin", "0.0.0.0:9901"]
