# tidecast forecast server: `tidecast serve` as a non-root user.
#
#   docker build -t tidecast .                                   # CPU-only torch for neural champions
#   docker build -t tidecast --build-arg EXTRAS= .               # smaller image, no torch
#   (the image carries no PDF or dashboard stack: the `report` and `dashboard` extras are not installed)
#   docker run -p 8000:8000 -v "$PWD/examples/power:/srv/project:ro" \
#       -e MLFLOW_TRACKING_URI=http://mlflow:5000 -e TIDECAST_ADMIN_TOKEN=... tidecast
#
# The project folder (its tidecast.yaml) is mounted at /srv/project; models come from the MLflow
# server named by MLFLOW_TRACKING_URI. See docs/serving.md.
FROM python:3.11-slim

ARG EXTRAS=neural
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    MPLBACKEND=Agg

# lightgbm needs the OpenMP runtime; curl-free health checks use python itself
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/tidecast
COPY pyproject.toml README.md ./
COPY tidecast ./tidecast
RUN pip install --extra-index-url "${TORCH_INDEX}" ".${EXTRAS:+[${EXTRAS}]}"

# a fixed non-root user; the project's state folder (prediction store) is a volume it owns
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin tidecast \
    && mkdir -p /srv/project/.tidecast /srv/state \
    && chown -R tidecast:tidecast /srv/project/.tidecast /srv/state
USER tidecast
WORKDIR /srv/project

ENV MLFLOW_TRACKING_URI=http://mlflow:5000 \
    TIDECAST_ADMIN_TOKEN="" \
    MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR=false

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

ENTRYPOINT ["tidecast"]
CMD ["serve", "--spec", "/srv/project", "--host", "0.0.0.0", "--port", "8000"]
