# thinkscale images. The model is not baked in: mount it at /models.
#   CPU:  docker build -t thinkscale:cpu .
#         docker run -p 8080:8080 -v $PWD/models:/models thinkscale:cpu
#   CUDA: docker build --build-arg VARIANT=cuda -t thinkscale:cuda .
#         docker run --gpus all -p 8080:8080 -v $PWD/models:/models thinkscale:cuda
# One build stage and one runtime stage serve both variants; only their base images differ.
ARG VARIANT=cpu

FROM debian:bookworm AS build-base-cpu
FROM nvidia/cuda:12.6.3-devel-ubuntu24.04 AS build-base-cuda
FROM debian:bookworm-slim AS runtime-base-cpu
FROM nvidia/cuda:12.6.3-runtime-ubuntu24.04 AS runtime-base-cuda

# ---- build ----
FROM build-base-${VARIANT} AS build
ARG VARIANT
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates build-essential cmake clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
# The Rust toolchain comes from the official Rust image (its glibc is not newer than either base's).
COPY --from=rust:1-bookworm /usr/local/cargo /usr/local/cargo
COPY --from=rust:1-bookworm /usr/local/rustup /usr/local/rustup
ENV PATH=/usr/local/cargo/bin:$PATH CARGO_HOME=/usr/local/cargo RUSTUP_HOME=/usr/local/rustup
WORKDIR /src
# .cargo/config.toml and cmake/ keep ggml's AMX kernels out; build.rs puts llama.cpp's libraries
# and one CPU variant per instruction-set level beside the binary, so the image runs on any x86-64
# host whatever CPU built it (the best variant is chosen when the server starts).
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY cmake cmake
# A workspace member (the fuzz targets): its manifest must be there, though the image never builds it.
COPY fuzz fuzz
COPY src src
COPY config config
RUN cargo build --release --locked $([ "$VARIANT" = cuda ] && echo --features cuda) \
    && mkdir /thinkscale && cp -a target/release/thinkscale target/release/lib*.so* /thinkscale/

# ---- runtime ----
FROM runtime-base-${VARIANT}
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libgomp1 bubblewrap python3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /thinkscale /opt/thinkscale
RUN ln -s /opt/thinkscale/thinkscale /usr/local/bin/thinkscale
COPY config /etc/thinkscale
ENV THINKSCALE_CONFIG=/etc/thinkscale/default.toml \
    THINKSCALE_MODEL=/models/qwen2.5-coder-0.5b-instruct.gguf \
    THINKSCALE_HOST=0.0.0.0
VOLUME /models
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s CMD curl -fsS http://127.0.0.1:8080/health || exit 1
ENTRYPOINT ["thinkscale", "serve"]
