# syntax=docker/dockerfile:1
# SSD detection service on a CUDA-enabled TensorFlow base. Build: `docker compose build`.
# The image installs only what serving needs: the project with its `serve` extra (not `train`,
# `eval` or `dev`), gRPC stubs generated at build time; the TensorFlow GPU base image already
# provides TensorFlow, so no `cpu`/`gpu` extra is installed on top of it.
# SSD_EXTRAS adds engines: a CPU image for the fastest CPU engine (`SSD_ENGINE=auto` measures
# the installed ones at first start) is built with
#   --build-arg TF_IMAGE=tensorflow/tensorflow:2.21.0 --build-arg SSD_EXTRAS=serve,openvino
ARG TF_IMAGE=tensorflow/tensorflow:2.21.0-gpu
ARG SSD_EXTRAS=serve

# --- build: wheels of the project (with generated gRPC stubs) and of its dependencies --------
FROM ${TF_IMAGE} AS build
ARG SSD_EXTRAS
WORKDIR /src
RUN python -m pip install --no-cache-dir --upgrade pip
COPY pyproject.toml README.md ./
COPY protos ./protos
COPY ssd_core ./ssd_core
COPY service ./service
RUN python -m pip install --no-cache-dir grpcio-tools \
 && python -m service._codegen \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels ".[${SSD_EXTRAS}]"

# --- runtime: the base image, the wheels, a non-root user -----------------------------------
FROM ${TF_IMAGE} AS runtime
ARG SSD_EXTRAS
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    TF_FORCE_GPU_ALLOW_GROWTH=true \
    SSD_HOST=0.0.0.0 \
    SSD_HTTP_PORT=8080 \
    SSD_GRPC_PORT=50051
COPY --from=build /wheels /wheels
RUN python -m pip install --no-cache-dir --no-index --find-links /wheels "ssd-detection[${SSD_EXTRAS}]" \
 && rm -rf /wheels \
 && useradd --create-home --uid 10001 ssd \
 && mkdir -p /models && chown ssd /models
COPY --chmod=0755 docker/healthcheck.py /usr/local/bin/ssd-healthcheck
USER ssd
WORKDIR /home/ssd
EXPOSE 8080 50051
# Readiness, not just liveness: the load balancer and `depends_on: service_healthy` wait for
# the model to be loaded and warmed up.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "/usr/local/bin/ssd-healthcheck"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["ssd-serve"]
