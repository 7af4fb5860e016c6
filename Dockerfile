# jitbot: a small, non-root image.
#   docker build -t jitbot .
#   docker run --rm -p 8080:8080 --env-file .env -v jitbot-data:/var/lib/jitbot \
#     -v "$PWD/policy.toml:/etc/jitbot/policy.toml:ro" jitbot

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin jitbot \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin jitbot \
    && strip target/release/jitbot \
    && mkdir -p /out/data

# Distroless: libc and CA certificates, no shell, no package manager; runs
# as uid 65532. An `exec` provider needs its programs (and, for scripts, a
# shell): build your own image FROM this one's binary on a base that has them.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/jitbot /usr/local/bin/jitbot
# The store's directory exists and belongs to the runtime user, so a fresh
# named volume mounted there is writable too.
COPY --from=build --chown=65532:65532 /out/data /var/lib/jitbot
ENV JITBOT_LISTEN=0.0.0.0:8080 \
    JITBOT_DATA_DIR=/var/lib/jitbot \
    JITBOT_CONFIG=/etc/jitbot/policy.toml \
    JITBOT_LOG_FORMAT=json
USER 65532:65532
EXPOSE 8080
VOLUME ["/var/lib/jitbot"]
ENTRYPOINT ["/usr/local/bin/jitbot"]
CMD ["serve"]
